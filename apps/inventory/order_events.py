"""Inventory's OrderCreated consumer: the kit's durable JetStream consumer
(orderflow_kit.jetstream_consumer: batches, ack after the handler, retries with backoff, dead
letters) with one handler, `ConfirmingReservations`: the batch's orders exist, so their
reservations are confirmed (reservations.confirm_reservations), in one transaction; then each
confirmation is announced (announcing_stock: a StockConfirmed event, all of the batch's published
at once) before the ack, on the consumer's own connection.

Its own durable consumer (ORDERFLOW_INVENTORY_CONSUMER, default "inventory"), its own dead
letters (dlq.inventory.orders.created). Confirming is idempotent, so redeliveries, duplicate
publishes and replays need no dedupe table here; a repeated confirmation is announced again with
the same ids, which the broker or the live feeds drop.

The handler takes plain objects and its two steps as functions, so it is tested without a broker
or a database (tests/unit/inventory/test_order_events.py); the guarantees are proven against real
servers (tests/integration/inventory)."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.announcing_stock import announce
from inventory.reservations import Confirmation, confirm_reservations
from inventory.settings import InventorySettings
from orderflow_contracts.events import OrderCreated, read_order_created
from orderflow_kit import tracing
from orderflow_kit.batches import Received, Result
from orderflow_kit.failures import PermanentFailure
from orderflow_kit.jetstream_consumer import DurableConsumer

Confirming = Callable[[Sequence[uuid.UUID]], Awaitable[list[Confirmation | PermanentFailure]]]
Announcing = Callable[[OrderCreated, Confirmation, Mapping[str, str]], Awaitable[None]]


class ConfirmingReservations:
    """The batch handler: one outcome per event (a Confirmation, or the PermanentFailure of an
    order that cannot be confirmed), then one announcement per Confirmation."""

    def __init__(self, confirm: Confirming, announce: Announcing) -> None:
        self._confirm = confirm
        self._announce = announce

    async def __call__(self, batch: Sequence[Received[OrderCreated]]) -> list[Result]:
        outcomes = await self._confirm([received.event.order.order_id for received in batch])
        # Also for a duplicate: the first delivery may have committed and died before this.
        await asyncio.gather(
            *(
                self._announce_in_its_context(received, outcome)
                for received, outcome in zip(batch, outcomes, strict=True)
                if isinstance(outcome, Confirmation)
            )
        )
        return [outcome if isinstance(outcome, Exception) else outcome.value for outcome in outcomes]

    async def _announce_in_its_context(self, received: Received[OrderCreated], confirmation: Confirmation) -> None:
        """The announcement belongs to the trace of the order it is about."""
        with tracing.in_context_of(received):
            await self._announce(received.event, confirmation, received.headers)


def order_events(settings: InventorySettings, engine: AsyncEngine) -> DurableConsumer[OrderCreated]:
    return DurableConsumer(
        settings.order_events,
        read_order_created,
        lambda js: ConfirmingReservations(partial(confirm_reservations, engine), partial(announce, js)),
    )
