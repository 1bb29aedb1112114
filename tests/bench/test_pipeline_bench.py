"""`make bench` cannot rot: a few seconds of every scenario kind at a low rate, through the same code
as `orderflow bench` (a pipeline of its own on the session's real servers, the load generator in a
process of its own), and a report of the right shape. Never its figures: speed is the bench's to
show, not a test's to assert."""

import io
import json
from pathlib import Path

from rich.console import Console

from orderflow_bench.measured import LOAD_GENERATOR
from orderflow_bench.run import SERVICES, BenchOptions, run_bench
from orderflow_devstack.infra import Infrastructure

MEASURED = {*SERVICES, "postgres", "nats", "redis", LOAD_GENERATOR}


def test_a_smoke_run_reports_every_scenario_kind_whole(infra: Infrastructure, tmp_path: Path) -> None:
    terminal = io.StringIO()
    options = BenchOptions(out_dir=tmp_path).smoke()

    report, written = run_bench(options, infra=infra, console=Console(file=terminal, width=200))

    assert [scenario.name for scenario in report.scenarios] == ["closed-4", "hot-4", "idempotent-4", "open-20"]
    for scenario in report.scenarios:
        assert scenario.accepted > 0, scenario.name
        assert scenario.errors == {}, scenario.name
        assert (scenario.awarded, scenario.unawarded) == (scenario.accepted, 0), scenario.name
        assert scenario.latency_ms is not None
        assert scenario.event_latency_ms is not None
        assert scenario.event_latency_ms.count == scenario.accepted
        assert scenario.drain_s is not None
        assert set(scenario.cpu_ms_per_order) == MEASURED, scenario.name
        assert all(value >= 0 for value in scenario.cpu_ms_per_order.values())
        assert set(scenario.context_switches_per_order) == MEASURED, scenario.name
        assert all(value >= 0 for value in scenario.context_switches_per_order.values())
        assert scenario.pipeline_cores > 0
        assert set(scenario.rss_mb) == set(SERVICES)
    assert set(report.idle_cpu_ms_per_s) == MEASURED
    assert len(report.lone_orders_ms) == options.lone_orders
    assert [path.name for path in written] == [
        f"{report.started_at[:10]}-pipeline.{kind}" for kind in ("json", "md", "png")
    ]
    stored = json.loads(written[0].read_text())
    assert stored["machine"]["cores"] >= 1
    assert len(stored["scenarios"]) == len(report.scenarios)
    assert written[2].read_bytes().startswith(b"\x89PNG")
    assert "closed-4" in terminal.getvalue()
