"""Loyalty's OrderCreated consumer: the kit's durable JetStream consumer
(orderflow_kit.jetstream_consumer: ack after the handler, retries with backoff, dead letters) with
one handler: award the order's points (awarding_points), once per event, then announce them
(announcing_points) before the ack, on the consumer's own connection."""

import asyncio

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty.announcing_points import announce
from loyalty.awarding_points import award_points
from loyalty.settings import LoyaltySettings
from orderflow_contracts.events import read_order_created
from orderflow_kit.jetstream_consumer import Handler, HandlerFactory, consume_and_publish


def awarding_points(engine: AsyncEngine) -> HandlerFactory:
    def handler(js: JetStreamContext) -> Handler:
        async def handle(message: Msg) -> str:
            event = read_order_created(message.headers, message.data)
            structlog.contextvars.bind_contextvars(order_id=str(event.order.order_id))
            award = await award_points(engine, event)
            # Also for a duplicate: the first delivery may have committed and died before this.
            await announce(js, award, message.headers)
            return award.outcome.value

        return handle

    return handler


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
