"""Inventory's OrderCreated consumer: the kit's durable JetStream consumer
(orderflow_kit.jetstream_consumer: ack after the handler, retries with backoff, dead letters) with
one handler: the order exists, so its reservation is confirmed (reservations.confirm_reservation).

Its own durable consumer (ORDERFLOW_INVENTORY_CONSUMER, default "inventory"), its own dead
letters (dlq.inventory.orders.created). Confirming is idempotent, so redeliveries, duplicate
publishes and replays need no dedupe table here."""

import asyncio

import structlog
from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.reservations import confirm_reservation
from inventory.settings import InventorySettings
from orderflow_contracts.events import read_order_created
from orderflow_kit.jetstream_consumer import Handler, consume


def confirming_reservations(engine: AsyncEngine) -> Handler:
    async def handle(message: Msg) -> str:
        order = read_order_created(message.headers, message.data).order
        structlog.contextvars.bind_contextvars(order_id=str(order.order_id))
        return (await confirm_reservation(engine, order.order_id)).value

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
