"""The client side of each row: connect, then what one worker repeats, timing each operation from the
moment it is sent to the moment its answer (reply, ack) is in. Every worker of a row shares one
connection where the protocol multiplexes (a gRPC channel, a NATS connection) and has its own where it
does not (HTTP/1.1: one keep-alive connection per worker). Echoes are checked, so a server that answers
anything else fails the row instead of flattering it."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import aiohttp
import grpc
import nats
import orjson
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck, StorageType, StreamConfig

from orderflow_bench.protocols import grpc_echo, http_echo, nats_echo
from orderflow_bench.protocols.measuring import Load, Window

JETSTREAM_STREAM = "BENCH"
JETSTREAM_SUBJECT = "bench.js"
JETSTREAM_CONSUMER = "bench"
_TIMEOUT_SECONDS = 30.0
_JSON = {"content-type": "application/json"}


class WrongEcho(RuntimeError):
    """The server answered with something else than what it was sent."""


def _check_echo(answer: object, sent: bytes) -> None:
    if answer != sent:
        raise WrongEcho(f"sent {len(sent)} bytes, got back {str(answer)[:80]!r}")


@asynccontextmanager
async def grpc_unary(target: str, payload: bytes) -> AsyncIterator[Load]:
    """One unary call per operation, every worker on one channel (one HTTP/2 connection)."""
    async with grpc.aio.insecure_channel(target) as channel:
        echo = channel.unary_unary(grpc_echo.UNARY_METHOD, request_serializer=None, response_deserializer=None)

        async def worker(window: Window) -> None:
            while window.running:
                started = time.perf_counter_ns()
                answer = await echo(payload, timeout=_TIMEOUT_SECONDS)
                _check_echo(answer, payload)
                window.record(started)

        yield Load(worker)


@asynccontextmanager
async def grpc_bidi(target: str, payload: bytes) -> AsyncIterator[Load]:
    """One long-lived bidi stream per worker on a shared channel; an operation is one message out and
    its echo back (ping-pong), so a stream has one message in flight."""
    async with grpc.aio.insecure_channel(target) as channel:
        open_stream = channel.stream_stream(grpc_echo.BIDI_METHOD, request_serializer=None, response_deserializer=None)

        async def worker(window: Window) -> None:
            stream = open_stream(request_iterator=None)  # messages go out through write()
            while window.running:
                started = time.perf_counter_ns()
                await stream.write(payload)
                answer = await stream.read()
                _check_echo(answer, payload)
                window.record(started)
            await stream.done_writing()
            if (code := await stream.code()) != grpc.StatusCode.OK:
                raise RuntimeError(f"the stream ended with {code.name}: {await stream.details()}")

        yield Load(worker)


@asynccontextmanager
async def grpc_bidi_shared(target: str, payload: bytes) -> AsyncIterator[Load]:
    """Every worker's calls on ONE bidi stream (a multiplexed stream, the alternative to unary calls
    one would weigh for a hot internal hop): each message carries an 8-byte call number, the echo
    comes back with it, and one reader hands each answer to the worker waiting for that number.
    grpc.aio allows one write at a time on a stream, so one writer sends what the workers queue."""
    async with grpc.aio.insecure_channel(target) as channel:
        open_stream = channel.stream_stream(grpc_echo.BIDI_METHOD, request_serializer=None, response_deserializer=None)
        stream = open_stream(request_iterator=None)
        outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        waiting: dict[int, asyncio.Future[bytes]] = {}

        async def write_in_turn() -> None:
            while True:
                await stream.write(await outgoing.get())

        async def hand_out_answers() -> None:
            try:
                while isinstance(answer := await stream.read(), bytes):  # else grpc.aio.EOF
                    waiting.pop(int.from_bytes(answer[:8], "big")).set_result(answer)
            finally:
                for answered in waiting.values():
                    answered.cancel()  # the stream ended under them: their workers stop

        writing = asyncio.create_task(write_in_turn())
        reading = asyncio.create_task(hand_out_answers())
        numbers = itertools.count()
        loop = asyncio.get_running_loop()

        async def worker(window: Window) -> None:
            while window.running and not reading.done():
                number = next(numbers)
                sent = number.to_bytes(8, "big") + payload
                answered = waiting[number] = loop.create_future()
                started = time.perf_counter_ns()
                outgoing.put_nowait(sent)
                _check_echo(await answered, sent)
                window.record(started)

        try:
            yield Load(worker)
        finally:
            writing.cancel()
            await asyncio.gather(writing, return_exceptions=True)
            if not reading.done():
                await stream.done_writing()
            await reading
        if (code := await stream.code()) != grpc.StatusCode.OK:
            raise RuntimeError(f"the shared stream ended with {code.name}: {await stream.details()}")


@asynccontextmanager
async def http_json(base_url: str, payload: bytes, concurrency: int) -> AsyncIterator[Load]:
    """One POST of {"payload": "..."} per operation, echoed by FastAPI through its pydantic model, over
    one keep-alive connection per worker. The client is aiohttp's: httpx, the project's own client,
    spent about seven times its CPU per request here (about 3 ms against 0.45 ms), so on two cores
    the row would have measured httpx rather than HTTP."""
    body = orjson.dumps({"payload": payload.decode()})
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:

        async def worker(window: Window) -> None:
            while window.running:
                started = time.perf_counter_ns()
                async with session.post(http_echo.ECHO_PATH, data=body, headers=_JSON) as response:
                    response.raise_for_status()
                    answer = await response.read()
                _check_echo(answer, body)
                window.record(started)

        yield Load(worker)


@asynccontextmanager
async def nats_connection(url: str) -> AsyncIterator[Client]:
    """A plain connection: a benchmark should fail on a lost server, not reconnect through it."""
    connection = await nats.connect(url, name="bench-client", connect_timeout=5, allow_reconnect=False)
    try:
        yield connection
    finally:
        await connection.close()


@asynccontextmanager
async def nats_request_reply(url: str, payload: bytes) -> AsyncIterator[Load]:
    """Core NATS request-reply to the echo responder: no persistence, no ack but the reply."""
    async with nats_connection(url) as connection:

        async def worker(window: Window) -> None:
            while window.running:
                started = time.perf_counter_ns()
                answer = await connection.request(nats_echo.ECHO_SUBJECT, payload, timeout=_TIMEOUT_SECONDS)
                _check_echo(answer.data, payload)
                window.record(started)

        yield Load(worker)


async def _ensure_stream(js: JetStreamContext) -> None:
    """File storage, like orderflow's ORDERS stream; creating it again with the same settings is a no-op."""
    await js.add_stream(StreamConfig(name=JETSTREAM_STREAM, subjects=[JETSTREAM_SUBJECT], storage=StorageType.FILE))


@asynccontextmanager
async def jetstream_publish_awaited(url: str, payload: bytes) -> AsyncIterator[Load]:
    """Each worker publishes and waits for the stream's ack before the next: one in flight per worker
    (how a relay that awaits every publish behaves)."""
    async with nats_connection(url) as connection:
        js = connection.jetstream(timeout=_TIMEOUT_SECONDS)
        await _ensure_stream(js)

        async def worker(window: Window) -> None:
            while window.running:
                started = time.perf_counter_ns()
                await js.publish(JETSTREAM_SUBJECT, payload)
                window.record(started)

        yield Load(worker)


def _acked(window: Window, started_ns: int, ack: asyncio.Future[PubAck]) -> None:
    if not ack.cancelled() and ack.exception() is None:
        window.record(started_ns)


@asynccontextmanager
async def jetstream_publish_async(url: str, payload: bytes, concurrency: int, batch: int) -> AsyncIterator[Load]:
    """Each worker sends `batch` messages without waiting (nats-py publish_async), then waits for
    their acks: up to concurrency x batch in flight. A message's latency runs from its publish to its ack."""
    async with nats_connection(url) as connection:
        js = connection.jetstream(timeout=_TIMEOUT_SECONDS, publish_async_max_pending=concurrency * batch)
        await _ensure_stream(js)

        async def worker(window: Window) -> None:
            while window.running:
                acks = []
                for _ in range(batch):
                    started = time.perf_counter_ns()
                    ack = await js.publish_async(JETSTREAM_SUBJECT, payload)
                    ack.add_done_callback(partial(_acked, window, started))
                    acks.append(ack)
                await asyncio.gather(*acks)

        yield Load(worker)


@asynccontextmanager
async def jetstream_pull_consume(url: str, concurrency: int, batch: int) -> AsyncIterator[Load]:
    """Drain what the publish rows stored, through one durable pull consumer with explicit acks:
    each worker has its own pull subscription, fetches up to `batch` messages and acks each one
    (a plain ack, as a consumer sends after its work; not the double ack that waits for the server).
    A message's latency runs from the fetch that brought it to its ack."""
    async with nats_connection(url) as connection:
        js = connection.jetstream(timeout=_TIMEOUT_SECONDS)
        await _ensure_stream(js)
        config = ConsumerConfig(
            durable_name=JETSTREAM_CONSUMER,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            max_ack_pending=concurrency * batch,
        )
        await js.add_consumer(JETSTREAM_STREAM, config)
        stored = (await js.stream_info(JETSTREAM_STREAM)).state.messages

        async def worker(window: Window) -> None:
            subscription = await js.pull_subscribe_bind(consumer=JETSTREAM_CONSUMER, stream=JETSTREAM_STREAM)
            try:
                while window.running:
                    started = time.perf_counter_ns()
                    try:
                        messages = await subscription.fetch(batch, timeout=1.0)
                    except TimeoutError:
                        continue  # nothing left: the window closes at the last ack
                    for message in messages:
                        await message.ack()
                        window.record(started)
            finally:
                await subscription.unsubscribe()

        yield Load(worker, available_ops=stored)
