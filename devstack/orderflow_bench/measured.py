"""The processes the bench measures, and how it reads their CPU time, context switches and memory (psutil).

Each name (a service, postgres, nats, redis, the load generator) stands for a process and all its
descendants: PostgreSQL's postmaster with its backends, a service with any workers it forks."""

import sys
import time
from collections.abc import Iterator, Mapping

import psutil

from orderflow_bench.stats import CpuSample

LOAD_GENERATOR = "load generator"


def _tree(process: psutil.Process) -> Iterator[psutil.Process]:
    yield process
    try:
        yield from process.children(recursive=True)
    except psutil.NoSuchProcess:
        return


def tree_cpu_seconds(process: psutil.Process) -> float:
    """CPU seconds (user and system) the process and its descendants have used so far, those that
    already exited included: a child's time passes to its parent's children_user/children_system
    when the parent reaps it, so summing both over the live processes counts each second once.
    PostgreSQL's backends come and go; their time stays in the sum. A descendant that exits between
    the listing and the reading is missed: noise of a connection's lifetime, not more."""
    total = 0.0
    for member in _tree(process):
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def tree_context_switches(process: psutil.Process) -> int:
    """Context switches (voluntary and involuntary) of the process and its descendants so far,
    every thread of each: on Linux a process's own count (/proc/PID/status) is its main thread's
    alone, so each thread is read. Those of processes that exited are kept nowhere; PostgreSQL's
    backends serve the services' pools, which live as long as the pipeline."""
    total = 0
    for member in _tree(process):
        try:
            threads = [thread.id for thread in member.threads()] if sys.platform == "linux" else [member.pid]
        except psutil.NoSuchProcess:
            continue
        for thread in threads:
            try:
                switches = psutil.Process(thread).num_ctx_switches()
            except psutil.NoSuchProcess:
                continue
            total += switches.voluntary + switches.involuntary
    return total


def sample_cpu(processes: Mapping[str, psutil.Process]) -> CpuSample:
    """Cumulative CPU seconds and context switches of each process tree (a process gone meanwhile
    is left out), and the CPU seconds of the whole machine."""
    at = time.monotonic()
    running = {name: process for name, process in processes.items() if process.is_running()}
    return CpuSample(
        {name: tree_cpu_seconds(process) for name, process in running.items()},
        machine_busy_seconds(),
        at,
        {name: tree_context_switches(process) for name, process in running.items()},
    )


def rss_mb(process: psutil.Process) -> float | None:
    """Resident memory of the process and its descendants, in MiB; None once it is gone."""
    total = 0
    for member in _tree(process):
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            if member is process:
                return None
    return round(total / 2**20, 1)


def listening_processes(ports: Mapping[str, int]) -> dict[str, psutil.Process]:
    """The process listening on each named TCP port, for a pipeline the bench did not start. When
    several share a port (workers inheriting the socket), the one whose parent does not: the root
    of the tree. A port nobody this user may see listens on is left out."""
    listeners: dict[int, set[int]] = {}
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.pid is not None and connection.laddr:
            listeners.setdefault(connection.laddr.port, set()).add(connection.pid)
    found: dict[str, psutil.Process] = {}
    for name, port in ports.items():
        pids = listeners.get(port, set())
        for pid in sorted(pids):
            try:
                process = psutil.Process(pid)
                if process.ppid() not in pids:
                    found[name] = process
                    break
            except psutil.NoSuchProcess:
                continue
    return found


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy so far, all cores together (neither idle nor
    waiting for I/O): what the pipeline used, and what everything else running here did."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)
