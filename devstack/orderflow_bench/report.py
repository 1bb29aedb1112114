"""What a bench run found, and its three renderings: tables on the terminal (and as Markdown for
docs/benchmarks.md), a JSON file with the machine it ran on, and a PNG plot."""

import dataclasses
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
from rich.console import Console
from rich.table import Table

from orderflow_bench.measured import LOAD_GENERATOR
from orderflow_bench.stats import Percentiles

# The report's order: the services along an order's way, then the servers, then the client.
PROCESS_ORDER = ("gateway", "orders", "inventory", "loyalty", "postgres", "nats", "redis", LOAD_GENERATOR)


@dataclass(frozen=True)
class ScenarioReport:
    name: str
    title: str
    # Orders offered per second (open loop), None for a closed loop.
    offered_rate: float | None
    connections: int
    duration_s: float
    sent: int
    accepted: int
    # Accepted orders per second, from the first request to the last answer.
    orders_per_second: float
    # "409 OUT_OF_STOCK", "timeout", ...: how many of each.
    errors: dict[str, int]
    latency_ms: Percentiles | None
    # Order committed -> points awarded (orderflow_bench.events).
    event_latency_ms: Percentiles | None
    awarded: int
    unawarded: int
    # From the last answer until the last accepted order's points were awarded.
    drain_s: float | None
    # CPU milliseconds per accepted order, from the load's start until its points were all awarded.
    cpu_ms_per_order: dict[str, float]
    # Summed over every process but the load generator.
    cpu_ms_per_order_total: float
    # Over the same window, in cores busy on average: the pipeline (every process but the load
    # generator), and every other process on the machine (the load generator not included either):
    # how much of the machine the pipeline had, on a machine it shares.
    pipeline_cores: float
    other_processes_cores: float
    # Context switches per accepted order over the same window, each process (every thread):
    # how often it was woken or preempted, a cost beyond its instructions.
    context_switches_per_order: dict[str, float]
    # Resident memory of each service at the end, MiB.
    rss_mb: dict[str, float]
    # With tracing on (`--tracing`): spans the services exported per accepted order (about: spans
    # still buffered when the drain ended are not counted).
    spans_per_order: float | None = None


@dataclass(frozen=True)
class TracingOverhead:
    """`--tracing`: the same scenarios on a second pipeline of the bench's own whose services trace
    every order (100 %) and export OTLP/HTTP to a receiver in the bench; what that costs."""

    protocol: str
    sampler: str
    scenarios: list[ScenarioReport]  # traced; the untraced ones are the report's
    idle_cpu_ms_per_s: dict[str, float]


@dataclass(frozen=True)
class Machine:
    cores: int | None
    memory_gib: float
    cpu: str
    python: str
    platform: str
    git_commit: str | None
    git_dirty: bool | None

    @classmethod
    def this_one(cls) -> "Machine":
        commit, dirty = _git_state()
        return cls(
            os.cpu_count(),
            round(psutil.virtual_memory().total / 2**30, 1),
            _cpu_model(),
            platform.python_version(),
            platform.platform(),
            commit,
            dirty,
        )


@dataclass(frozen=True)
class BenchReport:
    started_at: str
    machine: Machine
    # Whether the bench started the pipeline or found one running, and how it found its processes.
    pipeline: str
    options: dict[str, object]
    # CPU milliseconds per second of each process at idle: the background in every order's figure.
    idle_cpu_ms_per_s: dict[str, float]
    # Event latency of single orders placed one at a time on an idle pipeline.
    lone_orders_ms: list[float]
    lone_order_latency_ms: Percentiles | None
    scenarios: list[ScenarioReport]
    tracing: TracingOverhead | None = None


def _git_state() -> tuple[str | None, bool | None]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return commit.strip(), bool(status.strip())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _processes(report: BenchReport) -> list[str]:
    seen = {name for scenario in report.scenarios for name in scenario.cpu_ms_per_order}
    return [name for name in PROCESS_ORDER if name in seen] + sorted(seen - set(PROCESS_ORDER))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{kind}: {count}" for kind, count in sorted(errors.items())) or "0"


def _drain(scenario: ScenarioReport) -> str:
    if scenario.drain_s is not None:
        return f"{scenario.drain_s:.2f} s"
    return f"{scenario.unawarded} not awarded" if scenario.unawarded else "-"


def _main_row(scenario: ScenarioReport, label: str) -> list[str]:
    latency, event = scenario.latency_ms, scenario.event_latency_ms
    return [
        label,
        f"{scenario.orders_per_second:.0f}",
        _errors(scenario.errors),
        *(_ms(getattr(latency, field, None)) for field in ("p50", "p90", "p99", "max")),
        *(_ms(getattr(event, field, None)) for field in ("p50", "p99", "max")),
        _drain(scenario),
        f"{scenario.cpu_ms_per_order_total:.1f}",
    ]


_MAIN_COLUMNS = (
    "scenario",
    "orders/s",
    "errors",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "event p50",
    "event p99",
    "event max",
    "drain",
    "CPU ms/order",
)


def _cpu_rows(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    processes = _processes(report)
    rows = [
        [
            scenario.name,
            *(f"{scenario.cpu_ms_per_order.get(name, float('nan')):.2f}" for name in processes),
            f"{scenario.pipeline_cores:.2f}",
            f"{scenario.other_processes_cores:.2f}",
        ]
        for scenario in report.scenarios
    ]
    return ["CPU ms per order", *processes, "pipeline cores", "other processes' cores"], rows


def _switch_rows(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    processes = _processes(report)
    rows = [
        [
            scenario.name,
            *(f"{scenario.context_switches_per_order.get(name, float('nan')):.1f}" for name in processes),
        ]
        for scenario in report.scenarios
    ]
    return ["context switches per order", *processes], rows


def _rss_line(report: BenchReport) -> str:
    if not report.scenarios:
        return ""
    rss = report.scenarios[-1].rss_mb
    return "RSS at the end: " + ", ".join(f"{name} {value:.0f} MiB" for name, value in rss.items())


def _idle_line(report: BenchReport) -> str:
    idle = report.idle_cpu_ms_per_s
    names = [name for name in PROCESS_ORDER if name in idle] + sorted(set(idle) - set(PROCESS_ORDER))
    return "CPU at idle, ms per second: " + ", ".join(f"{name} {idle[name]:.1f}" for name in names)


def _lone_line(report: BenchReport) -> str:
    lone = report.lone_order_latency_ms
    if lone is None:
        return "Lone orders at idle: none placed"
    each = ", ".join(_ms(value) for value in report.lone_orders_ms)
    return f"Lone orders at idle, event latency: p50 {_ms(lone.p50)} ms, max {_ms(lone.max)} ms ({each} ms)"


def _tracing_rows(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    header = [
        "tracing 100 %",
        "orders/s off / on",
        "p50 ms off / on",
        "p99 ms off / on",
        "CPU ms/order off / on",
        "CPU overhead",
        "spans/order",
    ]
    rows = []
    traced = {scenario.name: scenario for scenario in report.tracing.scenarios} if report.tracing else {}
    for off in report.scenarios:
        on = traced.get(off.name)
        if on is None:
            continue
        overhead = (
            (on.cpu_ms_per_order_total / off.cpu_ms_per_order_total - 1) * 100 if off.cpu_ms_per_order_total else 0
        )
        rows.append(
            [
                off.name,
                f"{off.orders_per_second:.0f} / {on.orders_per_second:.0f}",
                f"{_ms(getattr(off.latency_ms, 'p50', None))} / {_ms(getattr(on.latency_ms, 'p50', None))}",
                f"{_ms(getattr(off.latency_ms, 'p99', None))} / {_ms(getattr(on.latency_ms, 'p99', None))}",
                f"{off.cpu_ms_per_order_total:.1f} / {on.cpu_ms_per_order_total:.1f}",
                f"{overhead:+.0f} %",
                "-" if on.spans_per_order is None else f"{on.spans_per_order:.1f}",
            ]
        )
    return header, rows


def _tracing_line(report: BenchReport) -> str:
    tracing = report.tracing
    if tracing is None:
        return ""
    idle = {name: tracing.idle_cpu_ms_per_s[name] for name in PROCESS_ORDER[:4] if name in tracing.idle_cpu_ms_per_s}
    return (
        f"Tracing on: OTLP {tracing.protocol} to a receiver in the bench, sampler {tracing.sampler}; CPU at idle, "
        "ms per second: " + ", ".join(f"{name} {value:.1f}" for name, value in idle.items())
    )


def print_report(report: BenchReport, console: Console) -> None:
    """The tables on the terminal."""
    main = Table(*_MAIN_COLUMNS, title=f"orderflow pipeline bench, {report.started_at}")
    for scenario in report.scenarios:
        main.add_row(*_main_row(scenario, scenario.name))
    console.print(main)
    header, rows = _cpu_rows(report)
    cpu = Table(*header, title=f"CPU per accepted order ({LOAD_GENERATOR}: apart, in no total), and cores busy")
    for row in rows:
        cpu.add_row(*row)
    console.print(cpu)
    header, rows = _switch_rows(report)
    switches = Table(*header, title="Context switches per accepted order (every thread of each process)")
    for row in rows:
        switches.add_row(*row)
    console.print(switches)
    console.print(_idle_line(report))
    console.print(_lone_line(report))
    console.print(_rss_line(report))
    if report.tracing is not None:
        header, rows = _tracing_rows(report)
        traced = Table(*header, title="What tracing every order costs (CPU: every process but the load generator)")
        for row in rows:
            traced.add_row(*row)
        console.print(traced)
        console.print(_tracing_line(report))
    console.print(f"Processes {report.pipeline}.")


def markdown(report: BenchReport) -> str:
    """The same tables in Markdown, for docs/benchmarks.md."""

    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        return [
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows),
        ]

    machine = report.machine
    lines = [
        f"Run {report.started_at} on {machine.cores} cores ({machine.cpu}), {machine.memory_gib} GiB, "
        f"Python {machine.python}, commit {(machine.git_commit or '?')[:12]}{' (dirty)' if machine.git_dirty else ''}.",
        "",
        *table(
            list(_MAIN_COLUMNS),
            [_main_row(scenario, f"{scenario.title} ({scenario.name})") for scenario in report.scenarios],
        ),
        "",
        *table(*_cpu_rows(report)),
        "",
        *table(*_switch_rows(report)),
        "",
        _idle_line(report) + ".",
        "",
        _lone_line(report) + ".",
        "",
        _rss_line(report) + ".",
        "",
    ]
    if report.tracing is not None:
        lines += [*table(*_tracing_rows(report)), "", _tracing_line(report) + ".", ""]
    return "\n".join(lines)


def plot(report: BenchReport, path: Path) -> None:
    """Latency p50/p99 against the offered rate (open loop), and orders/s accepted per scenario."""
    figure = Figure(figsize=(12, 4.8), layout="constrained")
    latency, throughput = figure.subplots(1, 2, width_ratios=(1, 1.3))
    open_loop = sorted((s for s in report.scenarios if s.offered_rate is not None), key=lambda s: s.offered_rate or 0)
    rates = [scenario.offered_rate for scenario in open_loop]
    lines = (
        ("p50", "latency_ms", "p50", "o-"),
        ("p99", "latency_ms", "p99", "s-"),
        ("event p99", "event_latency_ms", "p99", "^--"),
    )
    for label, measure, field, style in lines:
        values = [getattr(getattr(scenario, measure), field, None) for scenario in open_loop]
        latency.plot(rates, [float("nan") if value is None else value for value in values], style, label=label)
    latency.set(title="Open loop: latency from intended start", xlabel="offered orders/s", ylabel="ms")
    if open_loop:
        latency.set_yscale("log")
        latency.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        latency.yaxis.set_major_formatter(ScalarFormatter())
        latency.yaxis.set_minor_formatter(NullFormatter())
        latency.legend()
    else:
        latency.text(0.5, 0.5, "no open-loop scenario", ha="center", va="center", transform=latency.transAxes)
    names = [scenario.name for scenario in report.scenarios]
    bars = throughput.barh(names, [scenario.orders_per_second for scenario in report.scenarios], color="tab:green")
    throughput.bar_label(bars, fmt="%.0f", padding=3)
    throughput.margins(x=0.1)
    throughput.invert_yaxis()
    throughput.set(title="Orders accepted per second", xlabel="orders/s")
    machine = report.machine
    figure.suptitle(
        f"orderflow pipeline bench {report.started_at[:16]}: {machine.cores} cores, {machine.memory_gib} GiB, "
        f"commit {(machine.git_commit or '?')[:10]}"
    )
    figure.savefig(path, dpi=110)


def write_report(report: BenchReport, out_dir: Path) -> list[Path]:
    """`<date>-pipeline.json`, `.md` and `.png` in `out_dir`; a later run the same day replaces them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"{report.started_at[:10]}-pipeline"
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md"), stem.with_suffix(".png")]
    paths[0].write_text(json.dumps(dataclasses.asdict(report), indent=2) + "\n")
    paths[1].write_text(markdown(report))
    plot(report, paths[2])
    return paths
