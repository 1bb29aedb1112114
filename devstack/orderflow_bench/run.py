"""`make bench` / `orderflow bench`: the pipeline under load, measured from outside.

One run: find or start the pipeline, stock the bench's products, start the load generator, warm
up, place a few lone orders on the idle pipeline (their event latency), then each scenario in turn:
load for its duration, wait until every accepted order's points are awarded (the drain), and read
each process's CPU time over that whole window. The next scenario starts on a drained pipeline."""

import asyncio
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import httpx
import psutil
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from orderflow_bench.events import EventTimes
from orderflow_bench.load import LoadGenerator, LoadResult, LoadSetup
from orderflow_bench.measured import LOAD_GENERATOR, rss_mb, sample_cpu
from orderflow_bench.otlp_receiver import OtlpReceiver
from orderflow_bench.report import BenchReport, Machine, ScenarioReport, TracingOverhead, print_report, write_report
from orderflow_bench.scenarios import Kind, Scenario, plan
from orderflow_bench.stats import cpu_ms_per, cpu_use, percentiles_ms
from orderflow_bench.target import (
    HOT_SKU,
    SKUS,
    BenchError,
    Target,
    customer_tokens,
    own_pipeline,
    running_gateway,
    stock_up,
)
from orderflow_devstack.infra import Infrastructure

SERVICES = ("gateway", "orders", "inventory", "loyalty")
LONE_ORDER_TIMEOUT = 30.0
# Pauses between lone orders, drawn between these (seconds): each order meets the consumers at
# another point of their fetch cycle, as a real lone order would.
LONE_ORDER_GAP = (0.2, 1.0)
# How a `--tracing` run's services export: the default of the OTLP exporters.
TRACING_PROTOCOL = "http/protobuf"


@dataclass(frozen=True)
class BenchOptions:
    duration: float = 30.0
    connections: int = 32
    rates: tuple[float, ...] = (50.0, 200.0, 400.0)
    kinds: tuple[Kind, ...] = tuple(Kind)
    # A closed loop this long before anything is measured: pools open, code paths warm.
    warmup: float = 5.0
    lone_orders: int = 10
    # Seconds of nothing, to measure the pipeline's background CPU (polling, housekeeping).
    idle: float = 5.0
    customers: int = 200
    # How long a scenario's drain may take before its unawarded orders are reported as such.
    drain_timeout: float = 120.0
    out_dir: Path = Path("docs/benchmarks")
    # A running pipeline's gateway (`make up`), None to start one of the bench's own.
    gateway_url: str | None = None
    state_dir: Path = Path(".state")
    # Also run every scenario on a second pipeline that traces every order, and report the cost.
    tracing: bool = False

    def smoke(self) -> "BenchOptions":
        """A few seconds of every kind at a low rate: proves the bench works, measures nothing."""
        return replace(
            self, duration=2.0, connections=4, rates=(20.0,), warmup=1.0, lone_orders=2, idle=1.0, drain_timeout=30.0
        )


def run_bench(
    options: BenchOptions, *, infra: Infrastructure | None = None, console: Console | None = None
) -> tuple[BenchReport, list[Path]]:
    """Run every scenario of `options`; print the tables and write JSON, Markdown and PNG to
    options.out_dir. `infra` gives the servers for a pipeline of the bench's own (the tests')."""
    console = console or Console()
    started_at = datetime.now().astimezone()
    if options.tracing and options.gateway_url is not None:
        raise BenchError("--tracing needs a pipeline of the bench's own: it starts one that traces (no --gateway)")
    with ExitStack() as stack:
        if options.gateway_url is not None:
            target = running_gateway(options.gateway_url, options.state_dir)
        else:
            with console.status("starting NATS, PostgreSQL, Redis and the four services"):
                target = stack.enter_context(own_pipeline(infra))
        idle, lone, scenarios = _measure(options, target, console)
    tracing = None
    if options.tracing:
        with OtlpReceiver(keep=False) as receiver, ExitStack() as stack:
            environment = receiver.environment(TRACING_PROTOCOL)
            with console.status("starting a pipeline that traces every order"):
                traced_target = stack.enter_context(own_pipeline(infra, environment))
            no_lone_orders = replace(options, lone_orders=0)
            traced_idle, _, traced = _measure(no_lone_orders, traced_target, console, lambda: receiver.count)
        tracing = TracingOverhead(TRACING_PROTOCOL, environment["OTEL_TRACES_SAMPLER"], traced, traced_idle)
    report = BenchReport(
        started_at.isoformat(timespec="seconds"),
        Machine.this_one(),
        target.found_by,
        _options_record(options),
        idle,
        [round(seconds * 1000, 2) for seconds in lone],
        percentiles_ms(lone),
        scenarios,
        tracing,
    )
    paths = write_report(report, options.out_dir)
    print_report(report, console)
    console.print("Written: " + ", ".join(str(path) for path in paths))
    return report, paths


def _measure(
    options: BenchOptions, target: Target, console: Console, spans: Callable[[], int] | None = None
) -> tuple[dict[str, float], list[float], list[ScenarioReport]]:
    """Idle CPU, lone orders and every scenario on `target`; `spans` counts the spans exported so far."""
    stock_up(target.gateway_url, target.jwt_secret)
    tokens = customer_tokens(target.jwt_secret, options.customers)
    with LoadGenerator(LoadSetup(target.gateway_url, tuple(tokens), SKUS, HOT_SKU)) as generator:
        processes = {**target.processes, LOAD_GENERATOR: psutil.Process(generator.pid)}
        bench = _Bench(options, target, generator, processes, tokens[0], spans)
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console,
        ) as progress:
            return asyncio.run(bench.measure(progress))


def smoke_out_dir() -> Path:
    """Where a smoke run writes: never docs/."""
    return Path(tempfile.mkdtemp(prefix="orderflow-bench-smoke-"))


def _options_record(options: BenchOptions) -> dict[str, object]:
    return {
        "duration_s": options.duration,
        "connections": options.connections,
        "rates": list(options.rates),
        "scenarios": [str(kind) for kind in options.kinds],
        "warmup_s": options.warmup,
        "lone_orders": options.lone_orders,
        "idle_s": options.idle,
        "customers": options.customers,
        "skus": len(SKUS),
        "hot_sku": HOT_SKU,
        "mode": "own pipeline" if options.gateway_url is None else f"running pipeline at {options.gateway_url}",
    }


@dataclass(frozen=True)
class _Bench:
    options: BenchOptions
    target: Target
    generator: LoadGenerator
    processes: dict[str, psutil.Process]
    lone_token: str
    spans: Callable[[], int] | None = None

    async def measure(self, progress: Progress) -> tuple[dict[str, float], list[float], list[ScenarioReport]]:
        options, target = self.options, self.target
        async with EventTimes.connect(target.postgres_url, target.orders_database, target.loyalty_database) as events:
            if options.warmup > 0:
                warmup = Scenario("warm-up", Kind.CLOSED, options.warmup, options.connections)
                await self._scenario(warmup, events, progress)
            idle = await self._idle_cpu(progress)
            lone = await self._lone_orders(events, progress)
            scenarios = plan(
                options.kinds, duration=options.duration, connections=options.connections, rates=options.rates
            )
            reports = [await self._scenario(scenario, events, progress) for scenario in scenarios]
        return idle, lone, reports

    async def _idle_cpu(self, progress: Progress) -> dict[str, float]:
        """CPU milliseconds per second each process uses while nobody orders anything: the
        background (polling, housekeeping, health checks) a share of which is in every order's
        CPU, a larger share the fewer orders per second."""
        seconds = self.options.idle
        task = progress.add_task("idle", total=seconds, detail="")
        before = sample_cpu(self.processes)
        await asyncio.sleep(seconds)
        after = sample_cpu(self.processes)
        progress.update(task, completed=seconds)
        return cpu_ms_per(before.processes, after.processes, after.at - before.at)

    async def _lone_orders(self, events: EventTimes, progress: Progress) -> list[float]:
        """Orders placed one at a time on the idle pipeline, each once the previous one's points are in."""
        count = self.options.lone_orders
        if count == 0:
            return []
        task = progress.add_task("lone orders at idle", total=count, detail="")
        gaps = random.Random("lone orders")
        latencies: list[float] = []
        headers = {"Authorization": f"Bearer {self.lone_token}"}
        body = {"items": [{"sku": SKUS[0], "quantity": 1}]}
        async with httpx.AsyncClient(base_url=self.target.gateway_url, timeout=10, trust_env=False) as client:
            for _ in range(count):
                await asyncio.sleep(gaps.uniform(*LONE_ORDER_GAP))
                mark = await events.ledger_mark()
                answer = await client.post("/v1/orders", json=body, headers=headers)
                answer.raise_for_status()
                order = [uuid.UUID(answer.json()["order_id"])]
                await events.wait_for_awards(mark, order, within=LONE_ORDER_TIMEOUT)
                latencies += (await events.awards(mark, order)).latencies
                progress.advance(task)
        return latencies

    async def _scenario(self, scenario: Scenario, events: EventTimes, progress: Progress) -> ScenarioReport:
        task = progress.add_task(scenario.name, total=scenario.duration, detail="opening connections")
        mark = await events.ledger_mark()
        await asyncio.to_thread(self.generator.prepare, scenario)
        spans_before = self.spans() if self.spans is not None else 0
        before = sample_cpu(self.processes)
        result = await self._load(scenario, task, progress)
        order_ids = [uuid.UUID(order_id) for order_id in result.order_ids]

        def drained(awarded: int) -> None:
            progress.update(task, detail=f"{len(order_ids)} accepted, awaiting points: {awarded} awarded")

        awarded = await events.wait_for_awards(mark, order_ids, within=self.options.drain_timeout, progress=drained)
        cpu = cpu_use(before, sample_cpu(self.processes), len(order_ids), load_generator=LOAD_GENERATOR)
        awards = await events.awards(mark, order_ids)
        progress.update(task, detail=f"{len(order_ids)} accepted, {awarded} awarded, {result.errors.total()} errors")
        drain = None
        if awards.unawarded == 0 and awards.last_awarded_at is not None:
            drain = round(max(0.0, awards.last_awarded_at.timestamp() - result.ended_at), 3)
        return ScenarioReport(
            name=scenario.name,
            title=scenario.title,
            offered_rate=scenario.rate,
            connections=scenario.connections,
            duration_s=scenario.duration,
            sent=result.sent,
            accepted=len(order_ids),
            orders_per_second=round(len(order_ids) / max(result.ended_at - result.started_at, 1e-9), 1),
            errors=dict(result.errors),
            latency_ms=percentiles_ms(result.latencies),
            event_latency_ms=percentiles_ms(awards.latencies),
            awarded=awards.awarded,
            unawarded=awards.unawarded,
            drain_s=drain,
            cpu_ms_per_order=cpu.per_order,
            cpu_ms_per_order_total=cpu.per_order_total,
            pipeline_cores=cpu.pipeline_cores,
            other_processes_cores=cpu.other_processes_cores,
            context_switches_per_order=cpu.switches_per_order,
            rss_mb={name: value for name in SERVICES if (value := self._rss(name)) is not None},
            spans_per_order=None
            if self.spans is None or not order_ids
            else round((self.spans() - spans_before) / len(order_ids), 1),
        )

    async def _load(self, scenario: Scenario, task: TaskID, progress: Progress) -> LoadResult:
        """Start the load and follow it on the progress display until its result arrives."""
        messages = self.generator.go()
        started = time.monotonic()
        while True:
            message = await asyncio.to_thread(next, messages)
            if isinstance(message, LoadResult):
                progress.update(task, completed=scenario.duration)
                return message
            progress.update(
                task,
                completed=min(time.monotonic() - started, scenario.duration),
                detail=f"{message.accepted} accepted, {message.answered - message.accepted} errors",
            )

    def _rss(self, name: str) -> float | None:
        process = self.processes.get(name)
        return None if process is None else rss_mb(process)
