"""Prometheus metrics for every service: where they are served, and gauges measured on scrape.

prometheus-client, not OpenTelemetry metrics: Prometheus is what reads them (compose, `make up`),
prometheus-client writes its exposition format directly, and counting costs a lock and an add; the
OpenTelemetry SDK would put views, aggregations and an exporter in between for the same text. Traces
are OpenTelemetry's (a separate concern); nothing here depends on them.

The counters and histograms are defined next to the code they measure (the outbox relay, the
consumer, the gateway's middleware...) in the process-wide default registry, and updated in line:
no I/O, no await. What only a database or the broker knows (rows pending in the outbox, a durable
consumer's backlog, dead letters stored) is measured when Prometheus asks for it, never on a
request's path: a service hands `measured_on_scrape` async sources that each return their metric
families; a scrape runs them on the service's event loop, all at once, each at most
SOURCE_TIMEOUT_SECONDS. A source that fails or times out leaves its series out of that scrape
(Prometheus then shows a gap, not a stale number) and is logged when it starts and stops failing.

A gRPC service serves its metrics on a port of its own (`serve_metrics`, a thread of
prometheus-client's); the gateway serves them at /metrics on its own port."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from functools import cache
from typing import Any

import structlog
from prometheus_client import REGISTRY, Histogram, disable_created_metrics, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

log = structlog.get_logger()

# No `<name>_created` timestamp beside every counter and histogram: Prometheus does not need them,
# and they would double what each scrape carries.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Every metric of orderflow's own starts with this.
NAMESPACE = "orderflow"
# Seconds: from a millisecond (a cached read) to the 10 s a handler may take at most.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Seconds: how long an event waits between hops (outbox to broker, broker to consumer); up to minutes in an outage.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# The longest one source may take during a scrape (Prometheus's own scrape timeout is 10 s).
SOURCE_TIMEOUT_SECONDS = 2.0

# Measures on scrape: the metric families it found (it may return none, say before its first use).
Source = Callable[[], Awaitable[Iterable[Metric]]]


@cache
def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once: the hot paths then pay one dict look-up and the add.
    (Label values are bounded sets: methods, codes, outcomes, consumers.)"""
    return metric.labels(*labels)


def observe_seconds(histogram: Histogram, seconds: float, *labels: str) -> None:
    child(histogram, *labels).observe(seconds)


class _OnScrape(Collector):
    """The collector behind `measured_on_scrape`: one per process, in the default registry."""

    def __init__(self) -> None:
        self._sources: dict[int, tuple[str, asyncio.AbstractEventLoop, Source]] = {}
        self._failing: set[str] = set()
        self._lock = threading.Lock()
        self._next = 0

    def add(self, name: str, loop: asyncio.AbstractEventLoop, source: Source) -> int:
        with self._lock:
            self._next += 1
            self._sources[self._next] = (name, loop, source)
            return self._next

    def remove(self, handle: int) -> None:
        with self._lock:
            self._sources.pop(handle, None)

    def describe(self) -> Iterable[Metric]:
        return []  # measured only when scraped: nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            sources = list(self._sources.values())
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[str, Source]]] = {}
        for name, loop, source in sources:
            by_loop.setdefault(loop, []).append((name, source))
        for loop, named in by_loop.items():
            if loop.is_closed() or _runs_on(loop):
                # Waiting here for a coroutine on this very loop would block it for good.
                continue
            future = asyncio.run_coroutine_threadsafe(self._measure(named), loop)
            try:
                yield from future.result(SOURCE_TIMEOUT_SECONDS + 1.0)
            except Exception as error:  # the loop is stuck or stopping: nothing from it this time
                future.cancel()
                log.warning("metrics not measured", error=repr(error))

    async def _measure(self, named: Sequence[tuple[str, Source]]) -> list[Metric]:
        results = await asyncio.gather(
            *(asyncio.wait_for(source(), SOURCE_TIMEOUT_SECONDS) for _, source in named), return_exceptions=True
        )
        found: list[Metric] = []
        for (name, _), result in zip(named, results, strict=True):
            if isinstance(result, BaseException):
                if name not in self._failing:
                    self._failing.add(name)
                    log.warning("metrics source failing", source=name, error=repr(result))
                continue
            if name in self._failing:
                self._failing.discard(name)
                log.info("metrics source measured again", source=name)
            found.extend(result)
        return found


def _runs_on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


_ON_SCRAPE = _OnScrape()
REGISTRY.register(_ON_SCRAPE)


@contextlib.contextmanager
def measured_on_scrape(sources: dict[str, Source]) -> Iterator[None]:
    """Measure each named source on every scrape while the block runs, on the running event loop."""
    loop = asyncio.get_running_loop()
    handles = [_ON_SCRAPE.add(name, loop, source) for name, source in sources.items()]
    try:
        yield
    finally:
        for handle in handles:
            _ON_SCRAPE.remove(handle)


@contextlib.contextmanager
def serve_metrics(host: str, port: int) -> Iterator[int]:
    """Serve the process's metrics at http://host:port/metrics (any path answers) until the block
    ends; yields the port (port 0 picks a free one)."""
    server, thread = start_http_server(port, addr=host)
    actual = int(server.server_address[1])
    log.info("metrics", url=f"http://{host}:{actual}/metrics")
    try:
        yield actual
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def metrics_endpoint(host: str, port: int, sources: dict[str, Source]) -> Iterator[int]:
    """`serve_metrics` with `sources` measured on scrape: what a gRPC service's `run` wraps itself in."""
    with serve_metrics(host, port) as actual, measured_on_scrape(sources):
        yield actual
