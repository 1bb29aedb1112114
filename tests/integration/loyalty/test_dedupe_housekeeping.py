"""Dedupe housekeeping against real PostgreSQL: processed event ids older than the retention are
purged in short batches, recent ones kept; the loyalty service runs it by itself."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty.dedupe import expired_claims
from loyalty.models import ProcessedEvent
from loyalty.settings import LoyaltySettings
from orderflow_kit.housekeeping import Purged, purge
from tests.support.polling import eventually
from tests.support.services import serving_loyalty

RETENTION = timedelta(seconds=LoyaltySettings().loyalty_dedupe_retention_seconds)


async def processed(engine: AsyncEngine, count: int, *, ago: timedelta) -> set[str]:
    """`count` fresh event ids, recorded as processed `ago`."""
    event_ids = {str(uuid.uuid4()) for _ in range(count)}
    processed_at = datetime.now(UTC) - ago
    async with engine.begin() as connection:
        await connection.execute(
            insert(ProcessedEvent).values([{"event_id": id_, "processed_at": processed_at} for id_ in event_ids])
        )
    return event_ids


async def still_remembered(engine: AsyncEngine, event_ids: set[str]) -> set[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT event_id FROM processed_events WHERE event_id = ANY(:ids)"), {"ids": list(event_ids)}
        )
        return {row.event_id for row in rows}


async def test_processed_event_ids_past_the_retention_are_purged_in_batches_and_recent_ones_kept(
    engine: AsyncEngine,
) -> None:
    expired = await processed(engine, 12, ago=RETENTION + timedelta(days=1))
    recent = await processed(engine, 3, ago=RETENTION - timedelta(days=1))

    purged = await purge(engine, expired_claims(RETENTION), batch_size=5, pause_seconds=0)

    assert purged == Purged(rows=12, batches=3)  # 5 + 5 + 2
    assert await still_remembered(engine, expired | recent) == recent


@pytest.fixture
async def purging_every_moment(settings: LoyaltySettings, js: JetStreamContext) -> AsyncIterator[None]:
    """The loyalty service (its consumer is removed by `js` at the end) purging every 0.2 s."""
    async with serving_loyalty(settings.model_copy(update={"loyalty_dedupe_purge_interval_seconds": 0.2})):
        yield


@pytest.mark.usefixtures("purging_every_moment")
async def test_the_loyalty_service_purges_expired_event_ids_by_itself(engine: AsyncEngine) -> None:
    recent = await processed(engine, 2, ago=timedelta(days=1))
    expired = await processed(engine, 3, ago=RETENTION + timedelta(days=1))

    await eventually(
        lambda: still_remembered(engine, expired | recent), lambda left: left == recent, what="only recent ids left"
    )
