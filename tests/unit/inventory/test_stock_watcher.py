"""A watcher's pending levels: bounded by the SKUs it watches, however many changes it is offered."""

import asyncio

from inventory.stock_watch import Watcher


def test_levels_a_watcher_has_not_taken_yet_coalesce_to_the_latest_per_sku() -> None:
    watcher = Watcher(frozenset({"MUG", "TEE", "CAP"}))

    for level in range(10_000):
        watcher.offer({"MUG": level, "TEE": 2 * level, "HAT": level})

    assert watcher.pending == 2  # one per watched SKU that changed; HAT is not watched
    assert watcher.take() == {"MUG": 9_999, "TEE": 19_998}
    assert watcher.take() == {}


def test_a_level_heard_before_the_first_read_finished_wins_over_the_read() -> None:
    watcher = Watcher(None)
    watcher.offer({"MUG": 4})  # heard while the current levels were being read

    watcher.offer({"MUG": 5, "TEE": 1}, keep_pending=True)  # the read, perhaps from before that change

    assert watcher.take() == {"MUG": 4, "TEE": 1}


async def test_changes_wait_for_a_level_and_end_when_the_watch_is_ended() -> None:
    watcher = Watcher(None)
    changes = watcher.changes()

    async def first_change() -> dict[str, int]:
        return await anext(changes)

    waiting = asyncio.create_task(first_change())
    await asyncio.sleep(0)
    assert not waiting.done()

    watcher.offer({"MUG": 1})
    assert await waiting == {"MUG": 1}

    watcher.end()
    assert [levels async for levels in changes] == []
