"""Loyalty's OrderCreated consumer: the kit's durable JetStream consumer
(orderflow_kit.jetstream_consumer: batches, ack after the handler, retries with backoff, dead
letters) with one handler: award the batch's points (awarding_points), once per event, then
announce them (announcing_points) before the ack, on the consumer's own connection."""

import asyncio
from collections.abc import Sequence

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty.announcing_points import announce
from loyalty.awarding_points import Award, award_points
from loyalty.settings import LoyaltySettings
from orderflow_contracts.events import OrderCreated, read_order_created
from orderflow_kit import tracing
from orderflow_kit.jetstream_consumer import Handler, HandlerFactory, Result, consume_and_publish, read_each


def awarding_points(engine: AsyncEngine) -> HandlerFactory:
    def handler(js: JetStreamContext) -> Handler:
        async def handle(messages: Sequence[Msg]) -> list[Result]:
            events = read_each(messages, read_order_created)
            awards = iter(await award_points(engine, [event for event in events if isinstance(event, OrderCreated)]))
            results = [event if isinstance(event, Exception) else next(awards) for event in events]
            # Also for a duplicate: the first delivery may have committed and died before this.
            await asyncio.gather(
                *(
                    _announce_in_its_context(js, award, message)
                    for message, award in zip(messages, results, strict=True)
                    if isinstance(award, Award)
                )
            )
            return [result if isinstance(result, Exception) else result.outcome.value for result in results]

        return handle

    return handler


async def _announce_in_its_context(js: JetStreamContext, award: Award, message: Msg) -> None:
    """The announcement belongs to the trace of the order that earned it."""
    with tracing.in_context_of(message):
        await announce(js, award, message.headers)


async def consume_order_events(
    settings: LoyaltySettings, engine: AsyncEngine, subscribed: asyncio.Event | None = None
) -> None:
    """Run until cancelled; then let the messages in flight finish (see jetstream_consumer.consume_and_publish)."""
    await consume_and_publish(
        settings.order_events_consumer(),
        awarding_points(engine),
        nats_url=settings.nats_url,
        client_name=f"loyalty-{settings.loyalty_consumer}",
        grace_seconds=settings.shutdown_grace_seconds,
        subscribed=subscribed,
    )
