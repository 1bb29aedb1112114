"""Event latency, order committed -> points awarded, read after the fact from the two databases.

An order's `orders.created_at` is stamped by the orders service as it writes the order and its
outbox row in one transaction; the ledger row's `created_at` is PostgreSQL's now() in the loyalty
transaction that awards the points. The difference spans the outbox relay, JetStream and the
loyalty consumer, on one machine's clock. Reading it from the databases rather than subscribing to
the points-awarded subject during the load keeps a subscriber's CPU out of the measured processes,
misses no event a subscriber would have joined too late for or dropped while slow, and works the
same against `make up`. Both stamps are taken a moment before their commits (microseconds to a few
milliseconds each, about the same on both sides).

The ledger's id only grows: the bench notes the highest before a scenario and looks only above it,
so polling for awards reads this scenario's rows, not the whole ledger."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from orderflow_kit.db import database_url

POLL_EVERY = 0.1


@dataclass(frozen=True)
class Awards:
    # Seconds from each order's commit to its points, for the orders awarded by the deadline.
    latencies: list[float]
    awarded: int
    unawarded: int
    last_awarded_at: datetime | None


def dsn(server_url: str, database: str) -> str:
    """An asyncpg DSN for `database` on the server at `server_url`, password included."""
    return database_url(server_url, database).set(drivername="postgresql").render_as_string(hide_password=False)


def latencies(committed: dict[uuid.UUID, datetime], awarded: dict[uuid.UUID, datetime]) -> list[float]:
    """Seconds from commit to award, for every order found on both sides."""
    return [(at - committed[order]).total_seconds() for order, at in awarded.items() if order in committed]


class EventTimes:
    """The orders and loyalty databases, read by the bench (never written)."""

    def __init__(self, orders: asyncpg.Connection, loyalty: asyncpg.Connection) -> None:
        self._orders = orders
        self._loyalty = loyalty

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, postgres_url: str, orders_database: str, loyalty_database: str
    ) -> AsyncIterator["EventTimes"]:
        orders = await asyncpg.connect(dsn(postgres_url, orders_database))
        try:
            loyalty = await asyncpg.connect(dsn(postgres_url, loyalty_database))
            try:
                yield cls(orders, loyalty)
            finally:
                await loyalty.close()
        finally:
            await orders.close()

    async def ledger_mark(self) -> int:
        """The ledger's highest id now: rows above it are newer."""
        mark: int = await self._loyalty.fetchval("SELECT coalesce(max(id), 0) FROM ledger")
        return mark

    async def awarded_count(self, since: int, order_ids: Sequence[uuid.UUID]) -> int:
        count: int = await self._loyalty.fetchval(
            "SELECT count(*) FROM ledger WHERE id > $1 AND order_id = ANY($2::uuid[])", since, order_ids
        )
        return count

    async def awarded(self, since: int, order_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, datetime]:
        rows = await self._loyalty.fetch(
            "SELECT order_id, created_at FROM ledger WHERE id > $1 AND order_id = ANY($2::uuid[])", since, order_ids
        )
        return {row["order_id"]: row["created_at"] for row in rows}

    async def committed(self, order_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, datetime]:
        rows = await self._orders.fetch(
            "SELECT order_id, created_at FROM orders WHERE order_id = ANY($1::uuid[])", order_ids
        )
        return {row["order_id"]: row["created_at"] for row in rows}

    async def wait_for_awards(
        self,
        since: int,
        order_ids: Sequence[uuid.UUID],
        *,
        within: float,
        progress: Callable[[int], None] = lambda awarded: None,
    ) -> int:
        """Poll until every order has its points, for at most `within` seconds; returns how many have."""
        deadline = time.monotonic() + within
        while True:
            count = await self.awarded_count(since, order_ids)
            progress(count)
            if count >= len(order_ids) or time.monotonic() >= deadline:
                return count
            await asyncio.sleep(POLL_EVERY)

    async def awards(self, since: int, order_ids: Sequence[uuid.UUID]) -> Awards:
        """Each order's event latency, for those awarded."""
        awarded = await self.awarded(since, order_ids)
        committed = await self.committed(list(awarded))
        return Awards(
            latencies(committed, awarded),
            len(awarded),
            len(order_ids) - len(awarded),
            max(awarded.values(), default=None),
        )
