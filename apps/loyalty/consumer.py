"""Loyalty's OrderCreated consumer: the kit's durable JetStream consumer
(orderflow_kit.jetstream_consumer: batches, ack after the handler, retries with backoff, dead
letters) with one handler, `AwardingPoints`: award the batch's points (awarding_points), once per
event, then announce them (announcing_points) before the ack, on the consumer's own connection.

The handler takes plain objects and its two steps as functions, so it is tested without a broker
or a database (tests/unit/loyalty/test_consumer.py); the guarantees are proven against real
servers (tests/integration/loyalty)."""

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty.announcing_points import announce
from loyalty.awarding_points import Award, award_points
from loyalty.settings import LoyaltySettings
from orderflow_contracts.events import OrderCreated, read_order_created
from orderflow_kit import tracing
from orderflow_kit.batches import Received, Result
from orderflow_kit.jetstream_consumer import DurableConsumer

Awarding = Callable[[Sequence[OrderCreated]], Awaitable[list[Award]]]
Announcing = Callable[[Award, Mapping[str, str]], Awaitable[None]]


class AwardingPoints:
    """The batch handler: one Award per event, then one announcement per Award."""

    def __init__(self, award: Awarding, announce: Announcing) -> None:
        self._award = award
        self._announce = announce

    async def __call__(self, batch: Sequence[Received[OrderCreated]]) -> list[Result]:
        awards = await self._award([received.event for received in batch])
        # Also for a duplicate: the first delivery may have committed and died before this.
        await asyncio.gather(
            *(self._announce_in_its_context(award, received) for award, received in zip(awards, batch, strict=True))
        )
        return [award.outcome.value for award in awards]

    async def _announce_in_its_context(self, award: Award, received: Received[OrderCreated]) -> None:
        """The announcement belongs to the trace of the order that earned it."""
        with tracing.in_context_of(received):
            await self._announce(award, received.headers)


def order_events(settings: LoyaltySettings, engine: AsyncEngine) -> DurableConsumer[OrderCreated]:
    return DurableConsumer(
        settings.order_events,
        read_order_created,
        lambda js: AwardingPoints(partial(award_points, engine), partial(announce, js)),
    )
