"""The arithmetic of the report: latency percentiles, and CPU use between two samples."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Percentiles:
    """Milliseconds, numpy's default (linear) interpolation between the two nearest samples."""

    p50: float
    p90: float
    p99: float
    max: float
    count: int


def percentiles_ms(seconds: Sequence[float]) -> Percentiles | None:
    """p50, p90, p99 and the maximum of durations given in seconds; None when there are none."""
    if not seconds:
        return None
    p50, p90, p99, top = np.percentile(np.asarray(seconds, dtype=float) * 1000.0, [50, 90, 99, 100])
    return Percentiles(round(p50, 2), round(p90, 2), round(p99, 2), round(top, 2), len(seconds))


def cpu_ms_per(before: Mapping[str, float], after: Mapping[str, float], count: float) -> dict[str, float]:
    """Each process's CPU milliseconds per order (or per second: `count` is what the time is
    shared by) between two samples of its cumulative CPU seconds; a process found in only one
    sample (it went away) is left out. Empty when there is nothing to share by."""
    return _per(before, after, count, scale=1000.0, digits=3)


def switches_per(before: Mapping[str, int], after: Mapping[str, int], count: float) -> dict[str, float]:
    """The same for context switches: each process's, per order, between two samples of its count."""
    return _per(before, after, count, scale=1.0, digits=1)


def _per(
    before: Mapping[str, float], after: Mapping[str, float], count: float, *, scale: float, digits: int
) -> dict[str, float]:
    if count <= 0:
        return {}
    return {name: round((after[name] - before[name]) * scale / count, digits) for name in before if name in after}


def total_ms(per_process: Mapping[str, float], *, excluding: str) -> float:
    """The sum over every process but `excluding` (the load generator)."""
    return round(sum(value for name, value in per_process.items() if name != excluding), 3)


@dataclass(frozen=True)
class CpuSample:
    # Cumulative CPU seconds of each measured process (tree).
    processes: dict[str, float]
    # Cumulative busy CPU seconds of the whole machine, all cores.
    machine: float
    # time.monotonic() when taken.
    at: float
    # Cumulative context switches (voluntary and involuntary) of each measured process tree.
    switches: dict[str, int]


@dataclass(frozen=True)
class CpuUse:
    # CPU milliseconds per accepted order, each process.
    per_order: dict[str, float]
    # Summed over every process but the load generator.
    per_order_total: float
    # Cores busy on average: the pipeline (every process but the load generator), and every
    # process not measured at all (the rest of a shared machine).
    pipeline_cores: float
    other_processes_cores: float
    # Context switches per accepted order, each process: how often it was woken or preempted.
    switches_per_order: dict[str, float]


def cpu_use(before: CpuSample, after: CpuSample, orders: int, *, load_generator: str) -> CpuUse:
    """What the processes used between two samples, per order and in cores."""
    seconds = max(after.at - before.at, 1e-9)
    per_second = cpu_ms_per(before.processes, after.processes, seconds)
    per_order = cpu_ms_per(before.processes, after.processes, orders)
    measured_cores = sum(per_second.values()) / 1000
    return CpuUse(
        per_order,
        total_ms(per_order, excluding=load_generator),
        round(total_ms(per_second, excluding=load_generator) / 1000, 2),
        round(max(0.0, (after.machine - before.machine) / seconds - measured_cores), 2),
        switches_per(before.switches, after.switches, orders),
    )
