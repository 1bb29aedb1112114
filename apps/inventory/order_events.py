"""Inventory's OrderCreated consumer: the kit's durable JetStream consumer
(orderflow_kit.jetstream_consumer: batches, ack after the handler, retries with backoff, dead
letters) with one handler: the batch's orders exist, so their reservations are confirmed
(reservations.confirm_reservations), in one transaction; then each confirmation is announced
(announcing_stock: a StockConfirmed event, all of the batch's published at once) before the ack,
on the consumer's own connection.

Its own durable consumer (ORDERFLOW_INVENTORY_CONSUMER, default "inventory"), its own dead
letters (dlq.inventory.orders.created). Confirming is idempotent, so redeliveries, duplicate
publishes and replays need no dedupe table here; a repeated confirmation is announced again with
the same ids, which the broker or the live feeds drop."""

import asyncio
from collections.abc import Sequence

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.announcing_stock import announce
from inventory.reservations import Confirmation, confirm_reservations
from inventory.settings import InventorySettings
from orderflow_contracts.events import OrderCreated, read_order_created
from orderflow_kit import tracing
from orderflow_kit.jetstream_consumer import Handler, HandlerFactory, Result, consume_and_publish, read_each


def confirming_reservations(engine: AsyncEngine) -> HandlerFactory:
    def handler(js: JetStreamContext) -> Handler:
        async def handle(messages: Sequence[Msg]) -> list[Result]:
            events = read_each(messages, read_order_created)
            orders = [event.order.order_id for event in events if isinstance(event, OrderCreated)]
            confirmed = iter(await confirm_reservations(engine, orders))
            outcomes = [event if isinstance(event, Exception) else next(confirmed) for event in events]
            # Also for a duplicate: the first delivery may have committed and died before this.
            await asyncio.gather(
                *(
                    _announce_in_its_context(js, event, outcome, message)
                    for message, event, outcome in zip(messages, events, outcomes, strict=True)
                    if isinstance(event, OrderCreated) and isinstance(outcome, Confirmation)
                )
            )
            return [outcome if isinstance(outcome, Exception) else outcome.value for outcome in outcomes]

        return handle

    return handler


async def _announce_in_its_context(
    js: JetStreamContext, event: OrderCreated, confirmation: Confirmation, message: Msg
) -> None:
    """The announcement belongs to the trace of the order it is about."""
    with tracing.in_context_of(message):
        await announce(js, event, confirmation, message.headers)


async def consume_order_events(
    settings: InventorySettings, engine: AsyncEngine, subscribed: asyncio.Event | None = None
) -> None:
    """Run until cancelled; then let the messages in flight finish (see jetstream_consumer.consume_and_publish)."""
    await consume_and_publish(
        settings.order_events_consumer(),
        confirming_reservations(engine),
        nats_url=settings.nats_url,
        client_name=f"inventory-{settings.inventory_consumer}",
        grace_seconds=settings.shutdown_grace_seconds,
        subscribed=subscribed,
    )
