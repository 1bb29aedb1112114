"""Inventory's OrderCreated consumer: the kit's durable JetStream consumer
(orderflow_kit.jetstream_consumer: batches, ack after the handler, retries with backoff, dead
letters) with one handler: the batch's orders exist, so their reservations are confirmed
(reservations.confirm_reservations), in one transaction.

Its own durable consumer (ORDERFLOW_INVENTORY_CONSUMER, default "inventory"), its own dead
letters (dlq.inventory.orders.created). Confirming is idempotent, so redeliveries, duplicate
publishes and replays need no dedupe table here."""

import asyncio
from collections.abc import Sequence

from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.reservations import confirm_reservations
from inventory.settings import InventorySettings
from orderflow_contracts.events import OrderCreated, read_order_created
from orderflow_kit.jetstream_consumer import Handler, Result, consume, read_each


def confirming_reservations(engine: AsyncEngine) -> Handler:
    async def handle(messages: Sequence[Msg]) -> list[Result]:
        events = read_each(messages, read_order_created)
        orders = [event.order.order_id for event in events if isinstance(event, OrderCreated)]
        confirmed = iter(await confirm_reservations(engine, orders))
        results: list[Result] = []
        for event in events:
            result = event if isinstance(event, Exception) else next(confirmed)
            results.append(result if isinstance(result, Exception) else result.value)
        return results

    return handle


async def consume_order_events(
    settings: InventorySettings, engine: AsyncEngine, subscribed: asyncio.Event | None = None
) -> None:
    """Run until cancelled; then let the messages in flight finish (see jetstream_consumer.consume)."""
    await consume(
        settings.order_events_consumer(),
        confirming_reservations(engine),
        nats_url=settings.nats_url,
        client_name=f"inventory-{settings.inventory_consumer}",
        grace_seconds=settings.shutdown_grace_seconds,
        subscribed=subscribed,
    )
