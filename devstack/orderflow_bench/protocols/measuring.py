"""How one row is measured: `concurrency` workers run a closed loop (each starts its next operation as
soon as the last one ends), a warm-up that does not count, then a window in which every operation
that starts and ends inside it counts, with its latency, and each process's CPU time (user + system,
all threads, from psutil) is read at both ends."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

STOP_GRACE_SECONDS = 5.0
"""How long workers get to finish their operations in flight once the window has closed."""

_TICK_SECONDS = 0.25


class Window:
    """Shared by a row's workers: whether to go on, and the latencies of the operations that count."""

    def __init__(self, available_ops: int | None) -> None:
        self.running = True
        self.latencies_ns: list[int] = []
        self.completed = 0  # warm-up included
        self.ended = asyncio.Event()  # a finite backlog is drained, or every worker has stopped
        self._available_ops = available_ops
        if available_ops == 0:
            self.ended.set()
        self._opened_ns: int | None = None
        self._closed_ns: int | None = None

    def record(self, started_ns: int) -> None:
        """An operation that started at `started_ns` (time.perf_counter_ns()) has just ended."""
        self.completed += 1
        if self._opened_ns is not None and self._closed_ns is None and started_ns >= self._opened_ns:
            self.latencies_ns.append(time.perf_counter_ns() - started_ns)
        if self._available_ops is not None and self.completed >= self._available_ops:
            self.ended.set()

    def open(self) -> None:
        self._opened_ns = time.perf_counter_ns()

    def close(self) -> float:
        """Stop counting and tell the workers to stop; the seconds the window was open."""
        self.running = False
        if self._closed_ns is None:
            self._closed_ns = time.perf_counter_ns()
        return 0.0 if self._opened_ns is None else (self._closed_ns - self._opened_ns) / 1e9


@dataclass(frozen=True)
class Load:
    """A row's client side, connected and ready: what one worker does until `window.running` turns
    False, and how many operations there are at most (a backlog to drain; None: endless)."""

    worker: Callable[[Window], Coroutine[Any, Any, None]]
    available_ops: int | None = None


@dataclass(frozen=True)
class Measurement:
    ops: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    cpu_seconds: dict[str, float]
    errors: dict[str, int]


Tick = Callable[[float, str], None]
"""Told every quarter of a second how many seconds have passed and what is going on."""


async def measure(
    load: Load,
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    processes: Mapping[str, psutil.Process],
    tick: Tick,
) -> Measurement:
    """Run `concurrency` workers for `warmup` then `duration` seconds (less when a backlog drains or
    every worker fails), and measure the second part. `processes` are the ones whose CPU counts, by role."""
    window = Window(load.available_ops)
    workers = [asyncio.create_task(load.worker(window)) for _ in range(concurrency)]

    def stopped(_: asyncio.Task[None]) -> None:
        if all(worker.done() for worker in workers):
            window.ended.set()

    for worker in workers:
        worker.add_done_callback(stopped)
    try:
        await _run_for(window, warmup, lambda elapsed: tick(elapsed, "warming up"))
        before = _cpu_seconds(processes)
        window.open()

        def progress(elapsed: float) -> None:
            tick(warmup + elapsed, f"{len(window.latencies_ns):,} ops, {len(window.latencies_ns) / elapsed:,.0f}/s")

        await _run_for(window, duration, progress)
        seconds = window.close()
        after = _cpu_seconds(processes)
    finally:
        window.close()
        errors = await _stop(workers)
    latencies = window.latencies_ns
    p50, p99 = _percentiles_ms(latencies)
    cpu = {role: after[role] - before[role] for role in processes}
    return Measurement(len(latencies), seconds, p50, p99, cpu, dict(errors))


async def _run_for(window: Window, seconds: float, tick: Callable[[float], None]) -> None:
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds and not window.ended.is_set():
        if elapsed > 0:
            tick(elapsed)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(window.ended.wait(), min(_TICK_SECONDS, seconds - elapsed))


def _cpu_seconds(processes: Mapping[str, psutil.Process]) -> dict[str, float]:
    times = {role: process.cpu_times() for role, process in processes.items()}
    return {role: cpu.user + cpu.system for role, cpu in times.items()}


async def _stop(workers: list[asyncio.Task[None]]) -> Counter[str]:
    """Wait for the workers to finish what they have in flight; what they raised, counted by kind."""
    done, hanging = await asyncio.wait(workers, timeout=STOP_GRACE_SECONDS)
    for worker in hanging:
        worker.cancel()
    await asyncio.gather(*hanging, return_exceptions=True)
    errors = Counter(_describe(error) for worker in done if (error := worker.exception()) is not None)
    if hanging:
        errors[f"worker still busy {STOP_GRACE_SECONDS:.0f} s after the window closed"] += len(hanging)
    return errors


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:200]


def _percentiles_ms(latencies_ns: list[int]) -> tuple[float | None, float | None]:
    if len(latencies_ns) < 2:
        return None, None
    cuts = statistics.quantiles(latencies_ns, n=100)
    return cuts[49] / 1e6, cuts[98] / 1e6
