"""The periodic purge outlives a database that is away: it logs and tries again at the next interval."""

import asyncio
import contextlib
from datetime import timedelta

import structlog

from orderflow_devstack.infra import free_port
from orderflow_kit.db import create_engine
from orderflow_kit.housekeeping import purge_periodically
from orders.outbox import published_events
from tests.support.polling import eventually


async def test_a_purge_that_finds_the_database_away_is_logged_and_tried_again() -> None:
    nowhere = create_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", "orders")
    try:
        with structlog.testing.capture_logs() as logs:
            purging = asyncio.create_task(
                purge_periodically(nowhere, published_events(timedelta(days=7)), every_seconds=0.05)
            )
            failures = await eventually(
                lambda: [entry for entry in logs if entry["event"] == "purge failed; trying again later"],
                lambda failed: len(failed) >= 3,
                what="three failed runs",
            )
            assert not purging.done()
            purging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purging
    finally:
        await nowhere.dispose()

    assert failures[0]["what"] == "published outbox events"
    assert failures[0]["exc_info"] is False  # an outage, not a bug: no traceback
