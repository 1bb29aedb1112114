"""`st run --checks all` (schemathesis' own command, every phase) against the running gateway in
front of the real services, once with a customer's bearer token and once with an admin's: every
answer must be one the OpenAPI document allows, and every rule the gateway enforces must be in the
document (issue 9.6), with schemathesis' default expectations, none relaxed: a request the
schema allows is never refused as malformed, one it refuses always is.

Every operation the gateway serves is tested, but live event streams, which stay open until the
client goes (tests/e2e/test_live_events.py; their Last-Event-ID pattern: tests/unit/gateway/
test_event_feed.py). One hook (schemathesis_hooks.py) makes each Idempotency-Key its request's own,
as a client does. Bounded examples keep each run to seconds."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.pipeline import Pipeline
from tests.support.tokens import admin_token, customer_token

# The customer the OpenAPI document gives as its example, so that the example phase orders for itself.
CUSTOMER_ID = "customer-42"
MAX_EXAMPLES = 5
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
IMPORT = "POST /v1/admin/orders:import"
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
# Valid fault flags would break the pipeline every other test shares (crash flags restart its
# services): tests/integration/gateway/test_admin_faults.py checks that operation's rules instead.
BREAKS_THE_PIPELINE = "PUT /v1/admin/faults"


def config(directory: Path, token: str) -> Path:
    """The token for the document's security scheme, not as a header for every request, so that st
    can also leave it out where it tests that an operation needs it. No crash cache: st would replay
    an earlier run's failures first, and runs would depend on each other."""
    path = directory / "schemathesis.toml"
    path.write_text(
        f"hooks = {json.dumps(str(HOOKS))}\n\n"
        f"[auth.openapi.bearer]\nbearer = {json.dumps(token)}\n\n"
        "[cache]\nenabled = false\n\n"
        # The bulk import answers every line, valid or not, inside its 200 stream (each line's
        # problem in its answer line): an invalid line is not a refused request.
        "[[operations]]\n"
        f"include-name = {json.dumps(IMPORT)}\n"
        "[operations.checks.negative_data_rejection]\n"
        f"expected-statuses = {json.dumps(['200', *REJECTED])}\n"
    )
    return path


@pytest.mark.parametrize("token", [customer_token(CUSTOMER_ID), admin_token(CUSTOMER_ID)], ids=["customer", "admin"])
def test_schemathesis_with_every_check_and_phase_finds_nothing(pipeline: Pipeline, token: str, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    run = subprocess.run(
        [
            str(st),
            "--config-file",
            str(config(tmp_path, token)),
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
            "--generation-deterministic",
            "--request-timeout",
            "10",
            "--exclude-path-regex",
            "/events$",
            "--exclude-name",
            BREAKS_THE_PIPELINE,
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    # The summary and the failures come last; a failure's curl line can hold a body of megabytes.
    assert run.returncode == 0, "\n".join(line[:2000] for line in run.stdout.splitlines()[-400:]) + run.stderr[-5000:]
