"""`orderflow orders import FILE.jsonl` against the real gateway: progress, each refused line named
by its line in the file (across batches), a summary and an exit code; run again, nothing twice."""

import json
import uuid
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from orderflow_devstack.cli import app
from orderflow_devstack.infra import free_port
from orderflow_kit.dev_tokens import SECRET_ENV
from tests.e2e.support import new_customer
from tests.support.pipeline import Pipeline
from tests.support.tokens import JWT_SECRET, as_admin

pytestmark = pytest.mark.e2e


def order_line(customer: str, sku: str, client_request_id: str) -> str:
    return json.dumps(
        {"customer_id": customer, "items": [{"sku": sku, "quantity": 1}], "client_request_id": client_request_id}
    )


def run_cli(*args: str) -> Result:
    # No --token: the CLI mints a development admin token with the gateway's secret.
    return CliRunner().invoke(app, ["orders", "import", *args], env={SECRET_ENV: JWT_SECRET})


def orders_of(pipeline: Pipeline, customer: str) -> list[str]:
    response = httpx.get(
        f"{pipeline.gateway_url}/v1/orders",
        params={"customer_id": customer, "page_size": 100},
        headers=as_admin(),
        trust_env=False,
    )
    assert response.status_code == 200, response.text
    return sorted(order["order_id"] for order in response.json()["orders"])


def test_an_import_shows_each_refused_line_and_a_summary_and_a_rerun_places_nothing_twice(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    customer, run = new_customer(), uuid.uuid4().hex[:8]
    lines = [order_line(customer, "E2E-MUG", f"{run}-{number}") for number in range(7)]
    lines[4] = order_line(customer, "E2E-NO-SUCH", f"{run}-4")  # line 5, in the third batch of two
    lines.insert(2, "")  # line 3: blank
    file = tmp_path / "orders.jsonl"
    file.write_text("\n".join(lines) + "\n")

    first = run_cli(str(file), "--gateway", pipeline.gateway_url, "--batch-lines", "2")
    placed = orders_of(pipeline, customer)
    again = run_cli(str(file), "--gateway", pipeline.gateway_url, "--batch-lines", "2")

    assert first.exit_code == 1, first.output
    assert "line 6: 404 UNKNOWN_SKU" in first.output
    assert "orders placed (or placed before) │ 6" in first.output
    assert "refused: UNKNOWN_SKU             │ 1" in first.output
    assert len(placed) == 6
    assert again.exit_code == 1, again.output
    assert orders_of(pipeline, customer) == placed


def test_every_line_placed_exits_0(pipeline: Pipeline, tmp_path: Path) -> None:
    customer, run = new_customer(), uuid.uuid4().hex[:8]
    file = tmp_path / "orders.jsonl"
    file.write_text("\n".join(order_line(customer, "E2E-TEE", f"{run}-{n}") for n in range(3)) + "\n")

    result = run_cli(str(file), "--gateway", pipeline.gateway_url)

    assert result.exit_code == 0, result.output
    assert "3/3" in result.output
    assert len(orders_of(pipeline, customer)) == 3


def test_a_gateway_that_cannot_be_reached_exits_2_saying_to_run_it_again(tmp_path: Path) -> None:
    file = tmp_path / "orders.jsonl"
    file.write_text(order_line(new_customer(), "E2E-MUG", "unreachable") + "\n")

    result = run_cli(str(file), "--gateway", f"http://127.0.0.1:{free_port()}")

    assert result.exit_code == 2, result.output
    assert "Run it again" in result.output
