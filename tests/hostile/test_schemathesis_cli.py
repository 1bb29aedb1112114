"""`st run --checks all` (schemathesis' own command, every phase) against the running gateway in
front of the real services, once with a customer's bearer token and once with an admin's: every
answer must be one the OpenAPI document allows, and every rule the gateway enforces must be in the
document (issue 9.6). Bounded examples keep it to seconds."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.pipeline import Pipeline
from tests.support.tokens import admin_token, customer_token

# The customer the OpenAPI document gives as its example, so that the example phase orders for itself.
CUSTOMER_ID = "customer-42"
MAX_EXAMPLES = 5
SEED = 20261203


@pytest.mark.skip(
    reason="issue 9.6 unfinished: st still finds ST202 on POST /v1/orders (422 IDEMPOTENCY_KEY_REUSED when it "
    "reuses the example key with another body; duplicate SKUs), an ST201 (restock over maxItems is 413) and "
    "one more ST202; remove this mark once the document states those rules"
)
@pytest.mark.parametrize("token", [customer_token(CUSTOMER_ID), admin_token(CUSTOMER_ID)], ids=["customer", "admin"])
def test_schemathesis_with_every_check_and_phase_finds_nothing(pipeline: Pipeline, token: str) -> None:
    st = Path(sys.executable).with_name("st")
    run = subprocess.run(
        [
            str(st),
            "run",
            f"{pipeline.gateway_url}/openapi.json",
            "--url",
            pipeline.gateway_url,
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--generation-deterministic",
            "--request-timeout",
            "10",
            "--header",
            f"Authorization: Bearer {token}",
            # A live event stream stays open until the client goes: tests/e2e/test_live_events.py.
            "--exclude-path-regex",
            "/events$",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-30000:] + run.stderr[-5000:]
