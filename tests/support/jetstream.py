"""JetStream housekeeping for tests: each test's durable consumers have names of their own, and
are removed when the test is done so they do not pile up on the session's server. And what a
stream holds on one subject."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from urllib.parse import unquote, urlsplit

import nats
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from orderflow_contracts.streams import DEAD_LETTER_STREAM, ORDERS_STREAM
from orderflow_kit.nats import ensure_streams


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


async def consumer_exists(nats_url: str, durable: str, stream: str = ORDERS_STREAM) -> bool:
    """Whether a durable consumer is there yet (one with deliver policy NEW only sees what comes after)."""
    connection = await nats.connect(nats_url)
    try:
        await connection.jetstream().consumer_info(stream, durable)
    except NotFoundError:
        return False
    finally:
        await connection.close()
    return True


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
