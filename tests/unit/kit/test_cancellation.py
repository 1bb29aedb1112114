"""raise_if_cancelled: a stop that a library swallowed is still honoured by the loop around it."""

import asyncio
import contextlib

import pytest

from orderflow_kit.nats import raise_if_cancelled


async def test_a_cancellation_a_library_swallowed_is_raised_by_the_next_check() -> None:
    checked_after_the_swallow = asyncio.Event()

    async def loop_around_a_swallowing_call() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # as nats-py does in places
            await asyncio.sleep(60)
        checked_after_the_swallow.set()
        raise_if_cancelled()
        await asyncio.sleep(60)  # the loop would otherwise run on, holding the shutdown

    task = asyncio.create_task(loop_around_a_swallowing_call())
    await asyncio.sleep(0)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)
    assert checked_after_the_swallow.is_set()


async def test_a_task_not_asked_to_stop_goes_on() -> None:
    raise_if_cancelled()
