"""JetStream for tests: each test's durable consumers have names of their own (and short timeouts,
`impatient`), are removed when the test is done so they do not pile up on the session's server,
and are watched until they exist or have settled what was published (`acked_through`). And what a
stream holds on one subject."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import nats
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from orderflow_contracts.streams import DEAD_LETTER_STREAM, ORDERS_STREAM
from orderflow_kit.consumer_settings import ConsumerSettings
from orderflow_kit.nats import ensure_streams

C = TypeVar("C", bound=ConsumerSettings)


def new_consumer_name(prefix: str) -> str:
    return f"{prefix}-test-{uuid.uuid4().hex[:10]}"


async def delete_consumer(nats_url: str, durable: str, stream: str = ORDERS_STREAM) -> None:
    """Remove a durable consumer if it exists."""
    connection = await nats.connect(nats_url)
    try:
        with suppress(NotFoundError):
            await connection.jetstream().delete_consumer(stream, durable)
    finally:
        await connection.close()


async def consumer_exists(js: JetStreamContext, consumer: str, stream: str = ORDERS_STREAM) -> bool:
    """Whether a durable consumer is there yet (one with deliver policy NEW only sees what comes after)."""
    try:
        await js.consumer_info(stream, consumer)
    except NotFoundError:
        return False
    return True


async def acked_through(js: JetStreamContext, consumer: str, stream_sequence: int, stream: str = ORDERS_STREAM) -> bool:
    """The consumer has settled every message of `stream` up to `stream_sequence` (acked it, or
    dead-lettered then acked it), and none it was given waits for an ack."""
    info = await js.consumer_info(stream, consumer)
    return (
        info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= stream_sequence and not info.num_ack_pending
    )


def impatient(settings: type[C], name: str, **changes: Any) -> C:
    """A durable consumer of the test's own, named after `name`, that only sees what is published
    once it exists (deliver policy NEW), with short timeouts and retries: a retried event comes
    back within a fraction of a second, and the third delivery is the last."""
    return settings(
        **{
            "consumer": new_consumer_name(name),
            "deliver_policy": "new",
            "max_deliver": 3,
            "handler_timeout_seconds": 1.0,
            "ack_wait_seconds": 2.5,
            "retry_base_seconds": 0.05,
            "retry_max_seconds": 0.2,
            **changes,
        }
    )


async def messages_on(
    js: JetStreamContext, subject: str, *, from_seq: int = 1, stream: str = ORDERS_STREAM
) -> list[RawStreamMsg]:
    """Every message `stream` holds on `subject`, from stream sequence `from_seq` on."""
    found: list[RawStreamMsg] = []
    while True:
        try:
            message = await js.get_msg(stream, seq=from_seq, subject=subject, next=True)
        except NotFoundError:
            return found
        found.append(message)
        assert message.seq is not None
        from_seq = message.seq + 1


@asynccontextmanager
async def jetstream(nats_url: str, *, removing: str | None = None) -> AsyncIterator[JetStreamContext]:
    """A connection of the test's own, with ORDERS and DEAD_LETTERS in place (as the services make
    them when they first connect); at the end it removes the durable consumer `removing`, the test's."""
    connection = await nats.connect(nats_url)
    try:
        js = connection.jetstream()
        await ensure_streams(js)
        yield js
        if removing is not None:
            with suppress(NotFoundError):
                await js.delete_consumer(ORDERS_STREAM, removing)
    finally:
        await connection.close()


async def ensure_orderflow_streams(nats_url: str) -> None:
    """Create ORDERS and DEAD_LETTERS, as the services do when they first connect."""
    async with jetstream(nats_url):
        pass


async def consumers_described_by(nats_url: str, text: str) -> dict[str, int]:
    """How many consumers of ORDERS and of DEAD_LETTERS have `text` in their description (a live
    event feed's name the request that opened it)."""
    connection = await nats.connect(nats_url)
    try:
        manager = connection.jsm()
        counts = {}
        for stream in (ORDERS_STREAM, DEAD_LETTER_STREAM):
            consumers = await manager.consumers_info(stream)
            counts[stream] = sum(text in (consumer.config.description or "") for consumer in consumers)
        return counts
    finally:
        await connection.close()


async def publish_raw_headers(nats_url: str, subject: str, header_lines: list[str], body: bytes) -> None:
    """Publish with a raw `HPUB` over a plain TCP socket, as a producer in another language might:
    header lines nats-py would refuse to send (`x(y): 1`) go out as they are. Returns once the
    server has processed it (PING answered by PONG); the stream on `subject` stores it."""
    url = urlsplit(nats_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        info = await reader.readline()
        assert info.startswith(b"INFO "), info
        options = {"verbose": False, "pedantic": False, "headers": True, "lang": "raw", "version": "0"}
        if url.username:
            options |= {"user": unquote(url.username), "pass": unquote(url.password or "")}
        header = ("NATS/1.0\r\n" + "".join(f"{line}\r\n" for line in header_lines) + "\r\n").encode()
        writer.write(f"CONNECT {json.dumps(options)}\r\n".encode())
        writer.write(f"HPUB {subject} {len(header)} {len(header) + len(body)}\r\n".encode() + header + body + b"\r\n")
        writer.write(b"PING\r\n")
        await writer.drain()
        answer = await reader.readline()
        assert answer == b"PONG\r\n", answer
    finally:
        writer.close()
        with suppress(ConnectionError):
            await writer.wait_closed()
