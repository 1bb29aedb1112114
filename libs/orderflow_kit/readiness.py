"""Readiness: whether a service can do its work right now, told through the standard gRPC health check.

A watcher probes the service's dependencies (PostgreSQL, NATS) every PROBE_INTERVAL_SECONDS, each
probe bounded by PROBE_TIMEOUT_SECONDS, and sets the health status of the server ("") and of its
services: NOT_SERVING while a required dependency is down, SERVING once all of them answer again.
Each dependency also has a health entry of its own, `dependency/<name>`, which says which one is
down, and every change is logged once. The watcher only reports: the connections themselves
recover on their own (the pools once the database is back, NATS reconnecting forever), so nothing needs a restart.

A dependency that is not required (NATS for orders, whose outbox keeps the events meanwhile) is
watched and reported the same way without making the service NOT_SERVING."""

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import asyncpg
import structlog
from grpc_health.v1 import health_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

PROBE_INTERVAL_SECONDS = 1.0
PROBE_TIMEOUT_SECONDS = 1.0
# How the probe's connections show up in pg_stat_activity.
PROBE_APPLICATION_NAME = "orderflow-readiness-probe"

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

log = structlog.get_logger()


@dataclass(frozen=True)
class Dependency:
    """Something a service needs, and how to tell that it answers: `probe()` raises when it does not."""

    name: str
    probe: Callable[[], Awaitable[None]]
    # False: an outage is reported (log line, its own health entry), but the service stays SERVING.
    required: bool = True

    @property
    def health_name(self) -> str:
        return f"dependency/{self.name}"


def postgres(engine: AsyncEngine) -> Dependency:
    """The service's database answers `SELECT 1`, on a connection of the probe's own, so a busy
    connection pool never reads as an outage. The connection is kept between probes (a new one
    every second would cost the server a backend each time) and opened again after a failure.

    The pool is not pinged before each use (orderflow_kit.db), so when the database answers again
    after an outage, the pool's connections from before it are dropped here, before the service
    reports SERVING again: the first calls after a restart do not meet dead connections."""
    url = engine.url.set(drivername="postgresql")
    asks_for_tls = "ssl" in url.query or "sslmode" in url.query
    dsn = url.render_as_string(hide_password=False)
    connection: asyncpg.Connection | None = None
    was_down = False

    async def select_1() -> None:
        nonlocal connection, was_down
        try:
            if connection is None:
                connection = await asyncpg.connect(
                    dsn,
                    server_settings={"application_name": PROBE_APPLICATION_NAME},
                    ssl=None if asks_for_tls else False,  # None: as the URL says
                )
            await connection.fetchval("SELECT 1")
        except BaseException:
            was_down = True
            if connection is not None:
                connection.terminate()  # a hung server must not hang the watcher
                connection = None
            raise
        if was_down:
            was_down = False
            await engine.dispose()

    return Dependency("postgres", select_1)


def nats_server(url: str, *, required: bool = True) -> Dependency:
    """A NATS server greets every new connection with its INFO line before anything else (and
    accepts connections only once JetStream has recovered its streams), so that greeting is the probe."""
    address = urlsplit(url)
    host, port = address.hostname or "127.0.0.1", address.port or 4222

    async def greeting() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            line = await reader.readline()
        finally:
            writer.close()
        if not line.startswith(b"INFO "):
            raise ConnectionError(f"NATS at {host}:{port} did not greet with INFO")

    return Dependency("nats", greeting, required=required)


def consumer_started(subscribed: asyncio.Event, *, required: bool = True) -> Dependency:
    """The service's JetStream consumer has subscribed (jetstream_consumer.consume's `subscribed`):
    until then a service whose work is consuming is not ready, whatever its server answers."""

    async def has_subscribed() -> None:
        if not subscribed.is_set():
            raise ConnectionError("the consumer has not subscribed yet")

    return Dependency("consumer", has_subscribed, required=required)


class HealthStatuses(Protocol):
    """What the watcher needs of grpc_health's HealthServicer."""

    async def set(self, service: str, status: int) -> None: ...


class Readiness:
    """Sets the health status of `services` (health check names; "" is the whole server) from
    what the `dependencies` answer. Without dependencies, they are simply SERVING."""

    def __init__(self, health: HealthStatuses, services: Sequence[str], dependencies: Sequence[Dependency]) -> None:
        self._health = health
        self._services = list(services)
        self._dependencies = list(dependencies)
        # When each dependency went down; absent while it answers.
        self._down_since: dict[str, float] = {}

    async def check(self) -> bool:
        """Probe every dependency once (all at once) and set the health status; True when SERVING."""
        failures = await asyncio.gather(*(_failure(dependency) for dependency in self._dependencies))
        outcome = list(zip(self._dependencies, failures, strict=True))
        serving = all(failure is None for dependency, failure in outcome if dependency.required)
        for dependency, failure in outcome:
            await self._health.set(dependency.health_name, SERVING if failure is None else NOT_SERVING)
            self._report(dependency, failure, serving)
        for name in self._services:
            await self._health.set(name, SERVING if serving else NOT_SERVING)
        return serving

    async def watch_dependencies(self) -> None:
        """Check every PROBE_INTERVAL_SECONDS until cancelled."""
        while True:
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)
            await self.check()

    def _report(self, dependency: Dependency, failure: str | None, serving: bool) -> None:
        """One line when a dependency goes down and one when it is back; nothing while it stays so."""
        down_since = self._down_since.get(dependency.name)
        if failure is not None and down_since is None:
            self._down_since[dependency.name] = time.monotonic()
            log.warning("dependency down", dependency=dependency.name, error=failure, serving=serving)
        elif failure is None and down_since is not None:
            del self._down_since[dependency.name]
            down_seconds = round(time.monotonic() - down_since, 1)
            log.info("dependency back", dependency=dependency.name, down_seconds=down_seconds, serving=serving)


async def _failure(dependency: Dependency) -> str | None:
    """Why `dependency` does not answer, or None when it does."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await dependency.probe()
    except TimeoutError:
        return f"no answer within {PROBE_TIMEOUT_SECONDS}s"
    except Exception as error:  # whatever the client raises, the answer is the same: not available
        return f"{type(error).__name__}: {error}"
    return None
