"""Waiting for what happens in the background (a relay, a consumer, a server): poll with a
deadline instead of sleeping, fast when things are fast and bounded when they hang."""

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

# Generous: only a failing test waits this long, and a loaded CI machine is slow to publish or consume.
WITHIN = 20.0
EVERY = 0.05


@overload
async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], object] = ..., *, within: float = ..., what: str = ...
) -> T: ...


@overload
async def eventually(
    probe: Callable[[], T], accept: Callable[[T], object] = ..., *, within: float = ..., what: str = ...
) -> T: ...


async def eventually(
    probe: Callable[[], Any], accept: Callable[[Any], object] = bool, *, within: float = WITHIN, what: str = "condition"
) -> Any:
    """Call `probe` (sync or async) until `accept` holds for its result, and return that result;
    fail at the deadline naming `what` and the last result seen."""
    deadline = time.monotonic() + within
    while True:
        result = probe()
        if inspect.isawaitable(result):
            result = await result
        if accept(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within}s; last seen: {result!r}")
        await asyncio.sleep(EVERY)
