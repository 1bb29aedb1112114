"""Reading a stream live from a position (orderflow_kit.stream_reader), against real NATS, on a
stream of the test's own: where it starts, in order and each message once, when it has caught
up, going on from where it was when its consumer is lost, and deleting its consumer at the end."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import nats
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StorageType

from orderflow_devstack.infra import Infrastructure
from orderflow_kit.stream_reader import StreamReader
from tests.support.polling import eventually


@dataclass(frozen=True)
class OwnStream:
    js: JetStreamContext
    name: str
    subject: str

    async def publish(self, *bodies: str, subject: str | None = None) -> list[int]:
        return [(await self.js.publish(subject or self.subject, body.encode())).seq for body in bodies]

    async def consumers(self) -> list[str]:
        return [info.name for info in await self.js.consumers_info(self.name)]


@pytest.fixture
async def stream(infra: Infrastructure) -> AsyncIterator[OwnStream]:
    name = f"READER_{uuid.uuid4().hex[:10]}".upper()
    connection = await nats.connect(infra.nats_url)
    js = connection.jetstream()
    await js.add_stream(name=name, subjects=[f"{name}.>"], storage=StorageType.MEMORY)
    yield OwnStream(js, name, f"{name}.wanted")
    await js.delete_stream(name)
    await connection.close()


class Reading:
    """A reader's messages as they come, read by a task of the test's."""

    def __init__(self, reader: StreamReader) -> None:
        self.reader = reader
        self.messages: list[Msg] = []
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for batch in self.reader.batches():
            self.messages.extend(batch)

    def bodies(self) -> list[str]:
        return [message.data.decode() for message in self.messages]

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.reader.close()


async def reading(reader: StreamReader) -> Reading:
    await reader.open()
    return Reading(reader)


async def test_it_reads_the_messages_after_a_sequence_in_order_then_new_ones_live(stream: OwnStream) -> None:
    first, *_ = await stream.publish("one", "two", "three")
    await stream.publish("elsewhere", subject=f"{stream.name}.other")
    read = await reading(StreamReader(stream.js, stream.name, [stream.subject], after=first))
    try:
        await eventually(read.bodies, lambda bodies: bodies == ["two", "three"], what="the messages after the first")
        assert read.reader.caught_up
        await stream.publish("four")
        await eventually(read.bodies, lambda bodies: bodies == ["two", "three", "four"], what="the live one")
        assert read.reader.last_sequence == read.messages[-1].metadata.sequence.stream
    finally:
        await read.stop()


async def test_it_reads_from_a_time_on(stream: OwnStream) -> None:
    await stream.publish("before")
    since = datetime.now(UTC)
    await eventually(lambda: datetime.now(UTC) > since, what="a later instant")
    await stream.publish("after")
    read = await reading(StreamReader(stream.js, stream.name, [stream.subject], since=since))
    try:
        await eventually(read.bodies, lambda bodies: bodies == ["after"], what="what was stored since")
    finally:
        await read.stop()


async def test_a_lost_consumer_is_replaced_from_where_the_reader_was(stream: OwnStream) -> None:
    """As after a broker restart: nothing read twice, nothing skipped, including what was stored meanwhile."""
    await stream.publish("one", "two")
    read = await reading(StreamReader(stream.js, stream.name, [stream.subject]))
    try:
        await eventually(read.bodies, lambda bodies: bodies == ["one", "two"], what="the first two")
        [lost] = await stream.consumers()
        await stream.js.delete_consumer(stream.name, lost)
        await stream.publish("three", "four")

        await eventually(read.bodies, lambda bodies: len(bodies) >= 4, what="the messages after the loss")
        assert read.bodies() == ["one", "two", "three", "four"]
        [replacement] = await stream.consumers()
        assert replacement != lost
    finally:
        await read.stop()


async def test_close_deletes_its_consumer(stream: OwnStream) -> None:
    reader = StreamReader(stream.js, stream.name, [stream.subject], description="mine")
    await reader.open()
    [info] = await stream.js.consumers_info(stream.name)

    await reader.close()

    assert info.config.description == "mine"
    assert await stream.consumers() == []
