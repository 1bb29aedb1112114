"""Live stock: what WatchStock streams (docs/patterns/streaming.md, server streaming).

Where changes come from: the database itself. A trigger on `products` (migration 0003) sends
`NOTIFY stock_changed` with the SKU and its new level whenever a transaction changes a product's
available stock or adds a product, whichever statement did it and through whichever replica.
PostgreSQL delivers notifications when the transaction commits, in commit order, to every session
that LISTENs: so the last level heard for a SKU is its level now, on every replica alike.

One LISTEN connection per process (StockWatch.run, a background task) fans each change out to the
process's watchers. Notifications sent while that connection is down are lost for good, so every
time it is (re)opened, the current levels are read again and given to every watcher: a watcher
may see a level twice, never miss the last one.

A watcher is bounded: it holds at most one pending level per SKU (a dict), replaced by a newer one
until the stream takes them. A client that reads slowly gets each SKU's latest level, not every
step in between, and the fan-out never waits for any watcher. How far a stream gets ahead of its
client is gRPC's HTTP/2 flow control: once the client's window is full, the stream waits and its
watcher's levels coalesce.

Stopping: `end_all` ends every watch (serve's on_stopping), so streams finish at once and never
hold the server's grace."""

import asyncio
import json
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Final

import asyncpg
import stamina
import structlog
from prometheus_client import Counter, Gauge
from sqlalchemy import bindparam, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.reservations import MAX_NAMED_SKUS
from orderflow_contracts.identifiers import SKU_PATTERN, is_sku
from orderflow_kit.db import autocommit
from orderflow_kit.errors import invalid_argument, not_found, unavailable

log = structlog.get_logger()

# The channel migration 0003's triggers notify.
NOTIFY_CHANNEL: Final = "stock_changed"
# How the LISTEN connection shows up in pg_stat_activity.
LISTENER_APPLICATION_NAME: Final = "inventory-stock-listener"
# The most SKUs one watch may name (an empty list watches them all).
MAX_WATCHED_SKUS: Final = 1000

WATCHERS = Gauge("orderflow_inventory_stock_watchers", "WatchStock streams open now")
COALESCED = Counter(
    "orderflow_inventory_stock_levels_coalesced_total",
    "Stock levels replaced by a newer one before a slow watcher's stream took them",
)
LISTENER_CONNECTIONS = Counter(
    "orderflow_inventory_stock_listener_connections_total",
    "LISTEN connections opened for stock changes (more than one: it was lost and opened again)",
)

Levels = dict[str, int]

_ALL_LEVELS = text("SELECT sku, available FROM products")
_LEVELS_OF = text("SELECT sku, available FROM products WHERE sku = ANY(:skus)").bindparams(bindparam("skus"))


class Watcher:
    """One WatchStock stream's pending levels: at most one per SKU, the latest."""

    def __init__(self, skus: frozenset[str] | None) -> None:
        self.skus = skus  # None: every SKU
        self._pending: Levels = {}
        self._changed = asyncio.Event()
        self._ended = False

    def offer(self, levels: Mapping[str, int], *, keep_pending: bool = False) -> None:
        """Take the levels of the SKUs this watcher watches, replacing older pending ones (with
        `keep_pending`, a level already pending wins: it was heard after `levels` were read)."""
        for sku, level in levels.items():
            if self.skus is not None and sku not in self.skus:
                continue
            if sku in self._pending:
                if keep_pending:
                    continue
                COALESCED.inc()
            self._pending[sku] = level
            self._changed.set()

    def end(self) -> None:
        self._ended = True
        self._changed.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def take(self) -> Levels:
        """The pending levels (perhaps none), which are then no longer pending."""
        levels, self._pending = self._pending, {}
        return levels

    async def changes(self) -> AsyncIterator[Levels]:
        """The pending levels, all at once, each time there are some; ends when `end` is called."""
        while not self._ended:
            if not self._pending:
                self._changed.clear()
                await self._changed.wait()
                continue
            yield self.take()


class StockWatch:
    """A process's LISTEN connection and its watchers."""

    def __init__(self, engine: AsyncEngine, *, retry_max_seconds: float = 5.0) -> None:
        self._engine = engine
        self._retry_max_seconds = retry_max_seconds
        self._watchers: set[Watcher] = set()
        self._stopping = False
        # Levels heard since the LISTEN connection opened, while the levels are read again: what
        # was heard wins over what was read (it may have been read before that change committed).
        self._heard_while_reading: Levels | None = None

    async def run(self) -> None:
        """Keep a LISTEN connection open until cancelled, opening it again whenever it is lost."""
        while True:
            async for attempt in stamina.retry_context(
                on=(asyncpg.PostgresError, asyncpg.InterfaceError, SQLAlchemyError, OSError, TimeoutError),
                attempts=None,
                timeout=None,
                wait_max=self._retry_max_seconds,
            ):
                with attempt:
                    await self._listen_until_lost()

    async def watch(self, skus: Collection[str]) -> AsyncIterator[Levels]:
        """The current levels of `skus` (all products when empty), then each change, until the
        caller stops iterating or the service stops. Refusals come before the first levels."""
        watched = _validated(skus)
        if self._stopping:
            raise unavailable("INVENTORY_UNAVAILABLE", "this inventory replica is stopping; watch again")
        watcher = Watcher(watched)
        # Watching before reading: a change committed after the read is heard, none falls in between.
        self._watchers.add(watcher)
        WATCHERS.inc()
        try:
            try:
                current = await self._read_levels(watched)
            except (SQLAlchemyError, OSError) as error:
                raise unavailable(
                    "DATABASE_UNAVAILABLE", "the inventory database is unavailable; watch again"
                ) from error
            if watched is not None and len(current) < len(watched):
                unknown = sorted(watched - current.keys())
                named = unknown[:MAX_NAMED_SKUS]
                raise not_found("UNKNOWN_SKU", f"unknown SKU(s): {', '.join(named)}", skus=",".join(named))
            watcher.offer(current, keep_pending=True)
            yield watcher.take()
            log.info("watching stock", skus=len(watched) if watched is not None else "all")
            async for levels in watcher.changes():
                yield levels
        finally:
            self._watchers.discard(watcher)
            WATCHERS.dec()

    def end_all(self) -> None:
        """At shutdown: every watch ends (its stream finishes, OK) and no new one starts."""
        self._stopping = True
        for watcher in self._watchers:
            watcher.end()

    async def _listen_until_lost(self) -> None:
        dsn = self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await asyncpg.connect(dsn, server_settings={"application_name": LISTENER_APPLICATION_NAME})
        try:
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _connection: lost.set())
            await connection.add_listener(NOTIFY_CHANNEL, self._heard)
            LISTENER_CONNECTIONS.inc()
            await self._resend_current_levels()
            await lost.wait()
            log.warning("stock LISTEN connection lost; listening again")
        finally:
            await _close(connection)

    async def _resend_current_levels(self) -> None:
        """What every watcher may have missed while nobody listened: all current levels again."""
        self._heard_while_reading = {}
        try:
            current = await self._read_levels(None)
            current.update(self._heard_while_reading)
        finally:
            self._heard_while_reading = None
        for watcher in list(self._watchers):
            watcher.offer(current)

    def _heard(self, _connection: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            change = json.loads(str(payload))
            sku, level = str(change["sku"]), int(change["available"])
        except (ValueError, KeyError, TypeError):
            log.error("unreadable stock notification", payload=str(payload)[:200])
            return
        if self._heard_while_reading is not None:
            self._heard_while_reading[sku] = level
        for watcher in list(self._watchers):
            watcher.offer({sku: level})

    async def _read_levels(self, skus: frozenset[str] | None) -> Levels:
        async with autocommit(self._engine) as connection:
            if skus is None:
                rows = await connection.execute(_ALL_LEVELS)
            else:
                rows = await connection.execute(_LEVELS_OF, {"skus": sorted(skus)})
            return {row.sku: row.available for row in rows}


def _validated(skus: Collection[str]) -> frozenset[str] | None:
    if len(skus) > MAX_WATCHED_SKUS:
        raise invalid_argument(f"skus must hold at most {MAX_WATCHED_SKUS} SKUs (none: all)", field="skus")
    for index, sku in enumerate(skus):
        if not is_sku(sku):
            raise invalid_argument(
                f"skus[{index}] {sku[:80]!r} is not a SKU (pattern {SKU_PATTERN})", field=f"skus[{index}]"
            )
    return frozenset(skus) or None


async def _close(connection: asyncpg.Connection) -> None:
    """Close, without waiting long for a server that is gone."""
    try:
        await asyncio.wait_for(connection.close(), timeout=2.0)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        connection.terminate()
