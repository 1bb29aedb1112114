"""The load generator: a process of its own, so that its CPU is measured apart and left out of the
pipeline's, and cheap enough not to starve the services on two cores: aiohttp on uvloop, keep-alive
connections opened before the clock starts, request bodies and headers rendered once.

The bench talks to it over a pipe: it sends a Scenario, the generator opens its connections and
answers Ready, the bench samples every process's CPU and sends Go, the generator reports Progress
while it runs and a LoadResult at the end; None ends the process."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import multiprocessing
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import TracebackType

import aiohttp
import orjson
import uvloop

from orderflow_bench.scenarios import Scenario

REQUEST_TIMEOUT = 10.0
"""Seconds a request may take, waiting for a connection included; past it, it counts as an error."""
PROGRESS_EVERY = 0.25
READY_TIMEOUT = 60.0
ORDERS_PATH = "/v1/orders"

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Send = Callable[[float], Coroutine[object, object, None]]


@dataclass(frozen=True)
class LoadSetup:
    """What every scenario's orders are made of: one bearer token per customer, and the SKUs."""

    gateway_url: str
    tokens: tuple[str, ...]
    skus: tuple[str, ...]
    hot_sku: str


@dataclass(frozen=True)
class Ready:
    """Connections open, requests rendered: the clock may start."""


@dataclass(frozen=True)
class Go:
    """Start the load now."""


@dataclass(frozen=True)
class Progress:
    answered: int
    accepted: int


@dataclass
class LoadResult:
    """One scenario as the client saw it. Latencies are of accepted orders (201), in seconds, each
    from the moment its request was due: its send in a closed loop, its slot in an open loop."""

    scenario: str
    # Wall-clock time (time.time()) when the load started and ended (the last answer).
    started_at: float
    ended_at: float
    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    order_ids: list[str] = field(default_factory=list)
    # "409 OUT_OF_STOCK", "500 INTERNAL", "timeout", "ClientOSError": how many of each.
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def answered(self) -> int:
        return len(self.latencies) + self.errors.total()


def intended_offsets(rate: float, duration: float) -> list[float]:
    """When each order of an open loop is due, in seconds from its start: evenly spaced at `rate`."""
    return [index / rate for index in range(max(1, math.floor(rate * duration)))]


async def open_loop(
    send: Send,
    offsets: Sequence[float],
    *,
    clock: Clock = time.perf_counter,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """Call `send(intended)` for each offset at start + offset, never waiting for an answer before
    the next is due; a send that starts late still gets its intended time, so whatever delayed it
    (a busy connection, this loop falling behind) counts in its latency: no coordinated omission."""
    start = clock()
    async with asyncio.TaskGroup() as sends:
        for offset in offsets:
            intended = start + offset
            delay = intended - clock()
            if delay > 0:
                await sleep(delay)
            sends.create_task(send(intended))


async def closed_loop(send: Send, connections: int, duration: float, *, clock: Clock = time.perf_counter) -> None:
    """`connections` clients, each sending its next order as soon as the previous one is answered."""
    end = clock() + duration

    async def client() -> None:
        while clock() < end:
            await send(clock())

    async with asyncio.TaskGroup() as clients:
        for _ in range(connections):
            clients.create_task(client())


class Orders:
    """The requests of one scenario, rendered up front where they repeat: a body per SKU, headers
    per customer. Customers take turns; SKUs are drawn at random (always the hot one when hot)."""

    def __init__(self, setup: LoadSetup, scenario: Scenario) -> None:
        skus = [setup.hot_sku] if scenario.hot else list(setup.skus)
        self._bodies = [orjson.dumps({"items": [{"sku": sku, "quantity": 1}]}) for sku in skus]
        self._headers = [
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"} for token in setup.tokens
        ]
        self._keyed = scenario.idempotency_keys
        self._run = uuid.uuid4().hex[:12]
        self._random = random.Random(scenario.name)
        self._count = itertools.count()

    def __iter__(self) -> Iterator[tuple[bytes, dict[str, str]]]:
        return self

    def __next__(self) -> tuple[bytes, dict[str, str]]:
        number = next(self._count)
        headers = self._headers[number % len(self._headers)]
        if self._keyed:
            # A structured-field string, as the Idempotency-Key draft has it; unique to this order.
            headers = {**headers, "Idempotency-Key": f'"bench-{self._run}-{number}"'}
        return self._random.choice(self._bodies), headers


def problem_code(body: bytes) -> str:
    """The `code` of a problem+json answer, or "-" when the body has none."""
    try:
        problem = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "-"
    code = problem.get("code") if isinstance(problem, dict) else None
    return code if isinstance(code, str) else "-"


async def run_scenario(
    setup: LoadSetup, scenario: Scenario, go: Callable[[], Awaitable[None]], report: Callable[[Progress], None]
) -> LoadResult:
    """Open the connections, `go()` (which returns when the bench says so), then load."""
    orders = Orders(setup, scenario)
    connector = aiohttp.TCPConnector(limit=scenario.connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(setup.gateway_url, connector=connector, timeout=timeout) as session:
        await _open_connections(session, min(scenario.connections, 64))
        await go()
        result = LoadResult(scenario.name, started_at=time.time(), ended_at=0.0)

        async def send(intended: float) -> None:
            body, headers = next(orders)
            result.sent += 1
            try:
                async with session.post(ORDERS_PATH, data=body, headers=headers) as response:
                    answer = await response.read()
                    if response.status == 201:
                        result.latencies.append(time.perf_counter() - intended)
                        result.order_ids.append(response.headers["Location"].rsplit("/", 1)[1])
                    else:
                        result.errors[f"{response.status} {problem_code(answer)}"] += 1
            except TimeoutError:
                result.errors["timeout"] += 1
            except aiohttp.ClientError as error:
                result.errors[type(error).__name__] += 1

        async def progress() -> None:
            while True:
                report(Progress(result.answered, len(result.latencies)))
                await asyncio.sleep(PROGRESS_EVERY)

        reporter = asyncio.create_task(progress())
        try:
            if scenario.rate is None:
                await closed_loop(send, scenario.connections, scenario.duration)
            else:
                await open_loop(send, intended_offsets(scenario.rate, scenario.duration))
        finally:
            reporter.cancel()
        result.ended_at = time.time()
        return result


async def _open_connections(session: aiohttp.ClientSession, count: int) -> None:
    """Keep-alive connections opened before the clock starts, so the load does not pay for them;
    best effort: a gateway still busy with the previous scenario's backlog may not answer them all."""

    async def touch() -> None:
        with contextlib.suppress(TimeoutError, aiohttp.ClientError):
            async with session.get("/healthz") as response:
                await response.read()

    await asyncio.gather(*(touch() for _ in range(count)))


def serve(connection: Connection, setup: LoadSetup) -> None:
    """The load generator process's main function: one scenario after another until None."""
    while (scenario := connection.recv()) is not None:

        async def go() -> None:
            connection.send(Ready())
            message = await asyncio.to_thread(connection.recv)
            if not isinstance(message, Go):
                raise RuntimeError(f"the bench sent {message!r} instead of Go")

        connection.send(uvloop.run(run_scenario(setup, scenario, go, connection.send)))


class LoadGenerator:
    """The load generator's process, seen from the bench: started once, one scenario at a time."""

    def __init__(self, setup: LoadSetup) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing inherited
        self._connection, child = context.Pipe()
        self._process = context.Process(target=serve, args=(child, setup), name="orderflow-bench-load", daemon=True)
        self._process.start()
        child.close()

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    def prepare(self, scenario: Scenario) -> None:
        """Hand it the scenario and return once its connections are open."""
        self._connection.send(scenario)
        message = self._receive(READY_TIMEOUT)
        if not isinstance(message, Ready):
            raise RuntimeError(f"the load generator sent {message!r} instead of Ready")

    def go(self) -> Iterator[Progress | LoadResult]:
        """Start the load; yields Progress while it runs, then its LoadResult."""
        self._connection.send(Go())
        while True:
            message = self._receive(REQUEST_TIMEOUT + PROGRESS_EVERY * 8)
            if not isinstance(message, Progress | LoadResult):
                raise RuntimeError(f"the load generator sent {message!r}")
            yield message
            if isinstance(message, LoadResult):
                return

    def close(self) -> None:
        if self._process.is_alive():
            self._connection.send(None)
            self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._connection.close()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _receive(self, timeout: float) -> object:
        try:
            if self._connection.poll(timeout):
                return self._connection.recv()
        except EOFError:
            self._process.join(1)
            raise RuntimeError(f"the load generator exited with code {self._process.exitcode}") from None
        raise RuntimeError(f"the load generator said nothing for {timeout:g}s")
