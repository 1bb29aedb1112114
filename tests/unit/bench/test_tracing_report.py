"""`orderflow bench --tracing`'s part of the report: each scenario off and on side by side, the CPU
overhead, and spans per order, in the Markdown and in the JSON."""

import dataclasses
import json

from orderflow_bench.report import BenchReport, Machine, ScenarioReport, TracingOverhead, markdown


def scenario(cpu_total: float, spans_per_order: float | None = None) -> ScenarioReport:
    return ScenarioReport(
        name="closed-32",
        title="closed loop",
        offered_rate=None,
        connections=32,
        duration_s=30,
        sent=100,
        accepted=100,
        orders_per_second=200,
        errors={},
        latency_ms=None,
        event_latency_ms=None,
        awarded=100,
        unawarded=0,
        drain_s=0.1,
        cpu_ms_per_order={"gateway": cpu_total},
        cpu_ms_per_order_total=cpu_total,
        pipeline_cores=1.5,
        other_processes_cores=0.1,
        context_switches_per_order={"gateway": 14.0},
        rss_mb={},
        spans_per_order=spans_per_order,
    )


def report(tracing: TracingOverhead | None) -> BenchReport:
    machine = Machine(2, 24.0, "cpu", "3.11", "linux", None, None)
    return BenchReport(
        "2026-12-03T10:00:00+00:00", machine, "started by the bench", {}, {}, [], None, [scenario(8.0)], tracing
    )


def test_the_traced_run_is_shown_beside_the_untraced_one_with_its_overhead() -> None:
    traced = TracingOverhead("http/protobuf", "parentbased_always_on", [scenario(10.0, 21.5)], {"gateway": 1.0})

    text = markdown(report(traced))

    assert "| closed-32 | 200 / 200 | - / - | - / - | 8.0 / 10.0 | +25 % | 21.5 |" in text
    assert "OTLP http/protobuf to a receiver in the bench, sampler parentbased_always_on" in text
    assert (
        json.loads(json.dumps(dataclasses.asdict(report(traced))))["tracing"]["scenarios"][0]["spans_per_order"] == 21.5
    )


def test_without_tracing_the_report_has_no_tracing_table() -> None:
    assert "tracing 100 %" not in markdown(report(None))
