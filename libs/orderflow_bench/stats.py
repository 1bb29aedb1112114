"""The arithmetic of the report: latency percentiles, and CPU per order from two samples."""

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


def cpu_ms_per_order(before: Mapping[str, float], after: Mapping[str, float], orders: int) -> dict[str, float]:
    """Each process's CPU milliseconds per accepted order between two samples of its cumulative CPU
    seconds; a process found in only one sample (it went away) is left out. Empty without orders."""
    if orders <= 0:
        return {}
    return {name: round((after[name] - before[name]) * 1000.0 / orders, 3) for name in before if name in after}


def total_ms(per_process: Mapping[str, float], *, excluding: str) -> float:
    """The sum over every process but `excluding` (the load generator)."""
    return round(sum(value for name, value in per_process.items() if name != excluding), 3)
