"""The catalog's availability for every browser watching it, read by one reader per process.

Today the gateway's catalog (GET /v1/products) is read every `web_stock_poll_seconds` while at
least one browser watches, and not at all otherwise. Each watcher gets the latest levels, never a
queue: one that is slow to read skips the levels in between (`changes` compares what it last got
with what there is now), so a slow browser costs nothing but its own connection."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import structlog

from web.gateway_client import ApiProblem

log = structlog.get_logger()

Levels = dict[str, int]


class StockWatch:
    def __init__(self, read: Callable[[], Awaitable[Levels]], every_seconds: float) -> None:
        self._read = read
        self._every = every_seconds
        self._levels: Levels = {}
        self._version = 0
        self._changed = asyncio.Condition()
        self._watchers = 0
        self._reader: asyncio.Task[None] | None = None

    async def changes(self) -> AsyncIterator[Levels]:
        """The levels that changed since the watcher's last ones (all of them first), for as long as it iterates."""
        self._watchers += 1
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._reading(), name="stock-watch")
        try:
            sent: Levels = {}
            seen = -1
            while True:
                async with self._changed:
                    await self._changed.wait_for(partial(self._newer_than, seen))
                    seen, levels = self._version, dict(self._levels)
                changed = {sku: level for sku, level in levels.items() if sent.get(sku) != level}
                if changed:
                    sent = levels
                    yield changed
        finally:
            self._watchers -= 1

    def _newer_than(self, version: int) -> bool:
        return self._version != version

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _reading(self) -> None:
        """Until the last watcher leaves; a failed read keeps the last levels and tries again."""
        while self._watchers > 0:
            try:
                levels = await self._read()
            except ApiProblem as problem:
                log.warning("catalog unavailable", problem=str(problem))
            else:
                if levels != self._levels or self._version == 0:
                    async with self._changed:
                        self._levels = levels
                        self._version += 1
                        self._changed.notify_all()
            await asyncio.sleep(self._every)
        self._reader = None
