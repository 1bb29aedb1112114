"""Outbox housekeeping against real PostgreSQL: published events past their retention are purged
in short batches; pending events never are, however old; the orders service runs it by itself."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, update
from sqlmodel.ext.asyncio.session import AsyncSession

from orderflow_contracts.cloudevents import CloudEvent
from orderflow_kit.housekeeping import Purged, purge
from orders.models import OutboxEvent
from orders.outbox import published_events
from orders.settings import OrdersSettings
from tests.integration.orders.helpers import stage
from tests.support.polling import eventually
from tests.support.services import serving_orders

WEEK = timedelta(days=7)


@pytest.fixture
def inventory_address(fake_inventory_address: str) -> str:
    """Nothing here places orders: the orders service only needs an inventory address to start."""
    return fake_inventory_address


async def age(
    engine: AsyncEngine, events: list[CloudEvent], *, created: timedelta, published: timedelta | None
) -> None:
    """Pretend `events` were written `created` ago and published `published` ago (None: still pending)."""
    now = datetime.now(UTC)
    async with AsyncSession(engine) as session, session.begin():
        await session.exec(
            update(OutboxEvent)
            .where(col(OutboxEvent.id).in_([uuid.UUID(event.id) for event in events]))
            .values(created_at=now - created, published_at=None if published is None else now - published)
        )


async def staged(
    engine: AsyncEngine, count: int, *, created: timedelta, published: timedelta | None
) -> list[CloudEvent]:
    events = await stage(engine, count)
    await age(engine, events, created=created, published=published)
    return events


async def remaining(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return {row.id for row in await connection.execute(text("SELECT id::text FROM outbox"))}


def ids(*groups: list[CloudEvent]) -> set[str]:
    return {event.id for group in groups for event in group}


async def test_published_events_past_the_retention_are_purged_in_batches_and_recent_ones_kept(
    orders_engine: AsyncEngine,
) -> None:
    await staged(orders_engine, 25, created=timedelta(days=9), published=timedelta(days=8))
    recent = await staged(orders_engine, 4, created=timedelta(days=6), published=timedelta(days=6))

    purged = await purge(orders_engine, published_events(WEEK), batch_size=10, pause_seconds=0)

    assert purged == Purged(rows=25, batches=3)  # 10 + 10 + 5
    assert await remaining(orders_engine) == ids(recent)


async def test_a_pending_event_is_never_purged_however_old(orders_engine: AsyncEngine) -> None:
    pending = await staged(orders_engine, 3, created=timedelta(days=400), published=None)
    published = await staged(orders_engine, 2, created=timedelta(days=400), published=timedelta(days=399))

    purged = await purge(orders_engine, published_events(timedelta(seconds=1)), batch_size=10, pause_seconds=0)

    assert purged == Purged(rows=len(published), batches=1)
    assert await remaining(orders_engine) == ids(pending)


async def test_a_purge_skips_rows_another_transaction_holds_instead_of_waiting(orders_engine: AsyncEngine) -> None:
    held, free = (
        await staged(orders_engine, 1, created=timedelta(days=9), published=timedelta(days=8)),
        await staged(orders_engine, 3, created=timedelta(days=9), published=timedelta(days=8)),
    )
    async with orders_engine.connect() as holder, holder.begin():
        await holder.execute(text("SELECT 1 FROM outbox WHERE id = CAST(:id AS uuid) FOR UPDATE"), {"id": held[0].id})

        purged = await asyncio.wait_for(purge(orders_engine, published_events(WEEK), pause_seconds=0), timeout=5)

        assert purged.rows == len(free)
    assert await remaining(orders_engine) == ids(held)
    assert (await purge(orders_engine, published_events(WEEK))).rows == 1  # its turn once released


@pytest.fixture
async def purging_every_moment(orders_settings: OrdersSettings) -> AsyncIterator[None]:
    async with serving_orders(orders_settings.model_copy(update={"outbox_purge_interval_seconds": 0.2})):
        yield


@pytest.mark.usefixtures("purging_every_moment")
async def test_the_orders_service_purges_expired_published_events_by_itself(orders_engine: AsyncEngine) -> None:
    recent = await staged(orders_engine, 2, created=timedelta(days=1), published=timedelta(days=1))
    await staged(orders_engine, 3, created=timedelta(days=9), published=timedelta(days=8))

    await eventually(lambda: remaining(orders_engine), lambda left: left == ids(recent), what="only recent rows left")
