"""The catalog's availability for every browser watching it, relayed from one stream per process.

While at least one browser watches, one reader follows the gateway's live stock
(`GET /v1/products/events`: inventory's WatchStock, whose first event holds every level and each
later one the levels that changed); when the last browser leaves, the reader stops and the stream
is closed. When the stream ends or cannot be opened (a gateway or an inventory replica stopping),
the reader keeps the last levels and follows again after `retry_seconds`; the new stream's first
event gives every level again. Each watcher gets the latest levels, never a queue: one that is
slow to read skips the levels in between (`changes` compares what it last got with what there is
now), so a slow browser costs nothing but its own connection."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from functools import partial

import structlog

from web.gateway_client import ApiProblem

log = structlog.get_logger()

Levels = dict[str, int]


class StockWatch:
    def __init__(self, follow: Callable[[], AsyncIterator[Levels]], retry_seconds: float) -> None:
        """`follow()` yields the levels that changed (all of them first) until its stream ends."""
        self._follow = follow
        self._retry = retry_seconds
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
            if self._watchers == 0 and self._reader is not None:
                # Nobody watches: stop following (the stream to the gateway is closed); the
                # next watcher starts a reader of its own.
                self._reader.cancel()
                self._reader = None

    def _newer_than(self, version: int) -> bool:
        return self._version != version

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _reading(self) -> None:
        """Until cancelled (the last watcher left); a stream that ends or fails keeps the last levels."""
        while True:
            try:
                async for changed in self._follow():
                    async with self._changed:
                        self._levels = {**self._levels, **changed}
                        self._version += 1
                        self._changed.notify_all()
                log.info("live stock stream ended: following again")
            except ApiProblem as problem:
                log.warning("live stock unavailable", problem=str(problem))
            await asyncio.sleep(self._retry)
