"""`orderflow bench-protocols --smoke`, the command `make bench-protocols` runs, for about a second per
row: every protocol still works end to end and lands in the report. Its figures are not asserted."""

import json
from pathlib import Path

from typer.testing import CliRunner

from orderflow_devstack.cli import app

ROWS = [
    "gRPC unary",
    "gRPC bidi streaming",
    "gRPC bidi, one stream shared",
    "HTTP/1.1 JSON",
    "NATS request-reply",
    "JetStream publish, awaited",
    "JetStream publish, async",
    "JetStream pull consume + ack",
]
CPU_ROLES = {
    "gRPC unary": {"server", "client"},
    "gRPC bidi streaming": {"server", "client"},
    "gRPC bidi, one stream shared": {"server", "client"},
    "HTTP/1.1 JSON": {"server", "client"},
    "NATS request-reply": {"server", "nats-server", "client"},
    "JetStream publish, awaited": {"nats-server", "client"},
    "JetStream publish, async": {"nats-server", "client"},
    "JetStream pull consume + ack": {"nats-server", "client"},
}


def test_every_protocol_row_runs_without_errors_and_is_written(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench-protocols", "--smoke", "--output-dir", str(tmp_path)])

    assert result.exit_code == 0, result.output
    [json_file] = tmp_path.glob("*-protocols-smoke.json")
    [markdown_file] = tmp_path.glob("*-protocols-smoke.md")
    report = json.loads(json_file.read_text())
    assert report["smoke"] is True
    assert [row["name"] for row in report["rows"]] == ROWS
    for row in report["rows"]:
        assert row["errors"] == {}, row["name"]
        assert row["ops"] > 0, row["name"]
        assert row["p50_ms"] is not None, row["name"]
        assert row["p99_ms"] is not None, row["name"]
        assert set(row["cpu_us_per_op"]) == CPU_ROLES[row["name"]], row["name"]
        assert all(cpu >= 0 for cpu in row["cpu_us_per_op"].values()), row["name"]
        assert row["cpu_us_per_op_total"] > 0, row["name"]
    machine = report["machine"]
    assert machine["cores"] >= 1
    assert machine["memory_bytes"] > 0
    assert all(machine["versions"][package] for package in ("grpcio", "nats-py", "uvicorn"))
    assert "git_commit" in machine
    assert [figure["name"] for figure in report["article_figures"]] == ["gRPC", "HTTP/2", "NATS"]
    markdown = markdown_file.read_text()
    assert all(f"| {name} |" in markdown for name in ROWS)
    assert "942,300" in markdown
