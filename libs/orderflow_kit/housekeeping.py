"""Periodic batched purge: tables that only grow (published outbox events, dedupe rows) lose their
rows once these are older than a retention, a little at a time.

Deleting a month of rows in one statement would hold their locks and one long transaction (which
also holds back vacuum everywhere) for as long as it takes. Here each batch is a short transaction
of its own deleting at most `batch_size` rows by primary key:

    DELETE FROM t WHERE key IN (SELECT key FROM t WHERE stamp < now() - :keep LIMIT :n FOR UPDATE SKIP LOCKED)

with a pause between batches, so the service's own writes never wait behind the purge for long.
`SKIP LOCKED` lets replicas purge side by side without waiting on each other. A row whose stamp
is NULL never matches (`NULL < x` is not true): an outbox row not yet published is never purged.
Each service runs `purge_periodically` as a background task; the database's clock decides age."""

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import Delete, delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped

from orderflow_kit.failures import is_dependency_failure

DEFAULT_BATCH_SIZE = 1000
DEFAULT_PAUSE_SECONDS = 0.1

log = structlog.get_logger()


@dataclass(frozen=True)
class Retention:
    """Which rows may go: those of the table of `key` whose `stamp` is older than `keep`."""

    # What the rows are, for the log line ("published outbox events").
    what: str
    # Its primary key (one column), e.g. `col(Model.id)`.
    key: Mapped[Any]
    # When the row stopped being needed (a timestamp column); NULL: still needed.
    stamp: Mapped[Any]
    keep: timedelta

    def batch(self, batch_size: int) -> Delete:
        """One batch: at most `batch_size` expired rows, skipping rows another transaction holds."""
        expired = (
            select(self.key)
            .where(self.stamp < func.now() - self.keep)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        )
        # col() types the key as Mapped; it is an InstrumentedAttribute, whose class_ is its model.
        model = self.key.class_  # type: ignore[attr-defined]
        return delete(model).where(self.key.in_(expired.scalar_subquery()))


@dataclass(frozen=True)
class Purged:
    rows: int
    batches: int


async def purge(
    engine: AsyncEngine,
    retention: Retention,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    pause_seconds: float = DEFAULT_PAUSE_SECONDS,
) -> Purged:
    """Delete every row `retention` lets go, batch after batch, until a batch comes back short."""
    statement = retention.batch(batch_size)
    rows = batches = 0
    while True:
        async with engine.begin() as connection:
            deleted = (await connection.execute(statement)).rowcount
        rows += deleted
        batches += 1
        if deleted < batch_size:
            return Purged(rows, batches)
        await asyncio.sleep(pause_seconds)


async def purge_periodically(
    engine: AsyncEngine,
    retention: Retention,
    *,
    every_seconds: float,
    batch_size: int = DEFAULT_BATCH_SIZE,
    pause_seconds: float = DEFAULT_PAUSE_SECONDS,
) -> None:
    """A background task: purge at once, then every `every_seconds`, until cancelled. A failed
    run is logged (with its traceback unless the database was away) and tried again at the next
    interval: housekeeping never takes the service down."""
    while True:
        try:
            purged = await purge(engine, retention, batch_size=batch_size, pause_seconds=pause_seconds)
        except Exception as error:
            log.warning(
                "purge failed; trying again later",
                what=retention.what,
                error=str(error),
                exc_info=not is_dependency_failure(error),
            )
        else:
            if purged.rows:
                log.info("purged", what=retention.what, rows=purged.rows, batches=purged.batches)
        await asyncio.sleep(every_seconds)
