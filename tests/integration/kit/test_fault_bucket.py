"""The fault flags' bucket against a real JetStream (orderflow_kit.fault_bucket): a write reaches
every watcher, a watcher started without NATS waits for it without ending, and one that lives
through a broker restart sees the writes made after it. Each test has a bucket of its own."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress

import pytest
from nats.js import JetStreamContext

from orderflow_devstack.infra import Infrastructure
from orderflow_kit import fault_bucket, faults
from orderflow_kit.fault_bucket import KEY, open_bucket, read_flags, watch_fault_flags, write_flags
from orderflow_kit.faults import NO_FAULTS, FaultFlags, SecondPublish
from tests.support.jetstream import jetstream
from tests.support.outages import Outage
from tests.support.polling import eventually

# A watcher that has heard nothing for this long reads the key again: short, so that a test of a
# lost watch does not wait for nats-py's own recovery of it.
RESYNC_SECONDS = 0.5


@pytest.fixture
def bucket() -> str:
    return f"faults-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def js(infra: Infrastructure, bucket: str) -> AsyncIterator[JetStreamContext]:
    async with jetstream(infra.nats_url) as connection:
        yield connection
        with suppress(Exception):
            await connection.delete_key_value(bucket)


@pytest.fixture
def no_bucket_flags() -> Iterator[None]:
    """The watcher that puts flags in force in this process leaves none behind."""
    yield
    faults.use_bucket_spec("", source="test")


@asynccontextmanager
async def watching(nats_url: str, bucket: str, received: list[str] | None = None) -> AsyncIterator[asyncio.Task[None]]:
    """A watcher running in the background, handing each spec to `received` (or putting it in force)."""
    use = received.append if received is not None else None
    task = asyncio.create_task(
        watch_fault_flags(nats_url, service="test", bucket=bucket, use=use, resync_seconds=RESYNC_SECONDS)
    )
    try:
        yield task
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


@pytest.mark.usefixtures("no_bucket_flags")
async def test_a_write_is_put_in_force_by_the_watcher_and_an_empty_set_heals(
    infra: Infrastructure, js: JetStreamContext, bucket: str
) -> None:
    async with watching(infra.nats_url, bucket) as watcher:
        stored = await write_flags(js, {"inventory_delay_ms": "1500", "publish_twice": ""}, bucket)
        assert stored.values == {"inventory_delay_ms": "1500", "publish_twice": "new_msg_id"}

        await eventually(
            faults.current,
            lambda flags: flags == FaultFlags(inventory_delay_ms=1500, publish_twice=SecondPublish.NEW_MSG_ID),
            what="the written flags in force",
        )
        assert await read_flags(js, bucket) == stored

        await write_flags(js, {}, bucket)
        await eventually(faults.current, lambda flags: flags == NO_FAULTS, what="no flags in force")
        assert not watcher.done()


async def test_two_watchers_replicas_both_see_every_write(
    infra: Infrastructure, js: JetStreamContext, bucket: str
) -> None:
    first: list[str] = []
    second: list[str] = []
    async with watching(infra.nats_url, bucket, first), watching(infra.nats_url, bucket, second):
        await eventually(lambda: (first, second), lambda seen: all(seen), what="both watchers reading the key")

        for values in ({"consumer_fail_first": "loyalty:2"}, {"relay_crash_after_publish": "on"}, {}):
            spec = faults.spec_of(values)
            await write_flags(js, values, bucket)
            await eventually(lambda: [first[-1], second[-1]], [spec, spec].__eq__, what=repr(spec))


async def test_a_deleted_key_or_a_spec_written_around_the_api_is_no_fault(
    infra: Infrastructure, js: JetStreamContext, bucket: str
) -> None:
    received: list[str] = []
    async with watching(infra.nats_url, bucket, received):
        kv = await open_bucket(js, bucket)
        await kv.put(KEY, b"inventory_delay_ms=soon")
        await eventually(lambda: received[-1:], lambda last: last == ["inventory_delay_ms=soon"], what="the raw spec")
        ignored = (await read_flags(js, bucket)).ignored
        assert ignored is not None
        assert ignored.startswith("inventory_delay_ms takes a whole number")

        await kv.put(KEY, b"publish_twice")
        await kv.delete(KEY)
        await eventually(lambda: received[-1:], lambda last: last == [""], what="the deleted key read as no flags")
        assert await read_flags(js, bucket) == fault_bucket.StoredFlags()


async def test_unknown_flags_or_bad_values_write_nothing(js: JetStreamContext, bucket: str) -> None:
    before = await write_flags(js, {"inventory_delay_ms": "10"}, bucket)

    for values in ({"inventory_delay_ms": "20", "relay_crash": "on"}, {"inventory_delay_ms": "soon"}):
        with pytest.raises(faults.FlagError):
            await write_flags(js, values, bucket)

    assert await read_flags(js, bucket) == before


async def test_a_watcher_started_without_nats_keeps_trying_and_applies_the_flags_once_it_is_back(
    infra: Infrastructure, js: JetStreamContext, bucket: str
) -> None:
    outage, url = Outage.in_front_of(infra.nats_url, 4222)
    await write_flags(js, {"inventory_delay_ms": "5"}, bucket)
    received: list[str] = []
    try:
        async with watching(url, bucket, received) as watcher:
            done, _ = await asyncio.wait({watcher}, timeout=1.5)
            assert not done, "the watcher gave up while NATS was unreachable"
            assert received == []

            await outage.end()
            await eventually(lambda: received, lambda seen: seen == ["inventory_delay_ms=5\n"], what="the flags")
            assert not watcher.done()
    finally:
        await outage.close()


async def test_a_watcher_lives_through_a_nats_restart_keeping_its_flags_and_sees_later_writes(
    infra: Infrastructure, bucket: str
) -> None:
    if infra.nats is None:
        pytest.skip("NATS comes from ORDERFLOW_NATS_URL: not ours to stop")
    received: list[str] = []
    async with watching(infra.nats_url, bucket, received) as watcher:
        async with jetstream(infra.nats_url) as js:
            await write_flags(js, {"inventory_delay_ms": "5"}, bucket)
        await eventually(lambda: received[-1:], lambda last: last == ["inventory_delay_ms=5\n"], what="first flags")

        await asyncio.to_thread(infra.nats.stop)
        await asyncio.to_thread(infra.nats.start)

        async with jetstream(infra.nats_url) as js:
            await write_flags(js, {"inventory_delay_ms": "6"}, bucket)
            await eventually(lambda: received[-1:], lambda last: last == ["inventory_delay_ms=6\n"], what="new flags")
            await js.delete_key_value(bucket)
        # Never an empty set handed over in between: the flags stayed in force through the outage.
        since_first = received[received.index("inventory_delay_ms=5\n") :]
        assert since_first == ["inventory_delay_ms=5\n", "inventory_delay_ms=6\n"]
        assert not watcher.done()
