"""schemathesis against the real gateway in front of the real services: every operation, valid and
invalid requests, checked against the OpenAPI document: once with an admin's bearer token, which
schemathesis also takes away or spoils to see each operation refuse, and once without a valid
token (none, or one schemathesis makes up), where every answer must be the documented 401."""

from typing import Any

import httpx
import schemathesis
from schemathesis import Case, CheckContext, Response

from gateway.app import create_app
from gateway.problems import PROBLEM_MEDIA_TYPE, problem_type
from gateway.settings import GatewaySettings
from tests.hostile import schemathesis_hooks
from tests.support.pipeline import Pipeline
from tests.support.tokens import JWT_SECRET, admin_token

# The customer the OpenAPI document gives as its example, so the example phase's order is the admin's own.
ADMIN_ID = "customer-42"
GENERATION = {"deterministic": True, "database": "none"}

# Registered globally by the import: each Idempotency-Key its request's own, as a client makes
# them, and the bulk import's NDJSON serializer.
assert callable(schemathesis_hooks.before_call)

# Every rule the gateway holds a request to is in the document (issue 9.6), so schemathesis' own
# expectations hold as they are: a schema-valid request is never refused as malformed, an invalid
# one always is (a 413 is a refusal too: a body larger than its operation's limit).
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
IMPORT = "POST /v1/admin/orders:import"

CONFIG = {
    "seed": 20261113,
    "generation": {**GENERATION, "max-examples": 60},
    "request-timeout": 10,
    "auth": {"openapi": {"bearer": {"bearer": admin_token(ADMIN_ID)}}},
    "checks": {"negative_data_rejection": {"expected-statuses": REJECTED}},
    "operations": [
        {
            # The bulk import answers every line, valid or not, inside its 200 stream (each line's
            # problem in its answer line): an invalid line is not a refused request.
            "include-name": IMPORT,
            "checks": {"negative_data_rejection": {"expected-statuses": ["200", *REJECTED]}},
        },
    ],
}

# Without a valid token, a request to an operation that needs one is a 401, whatever else is wrong
# with it; fewer examples do.
ANONYMOUS_CONFIG = {
    "seed": 20261113,
    "generation": {**GENERATION, "max-examples": 10},
    "request-timeout": 10,
    "checks": {
        "positive_data_acceptance": {"expected-statuses": ["401"]},
        "negative_data_rejection": {"expected-statuses": REJECTED},
    },
}


DOCUMENT = create_app(GatewaySettings(jwt_secret=JWT_SECRET)).openapi()


def streams_events(ctx: Any) -> bool:
    """An event stream stays open until the client goes, so a valid request never ends: these
    operations are tested by tests/e2e/test_live_events.py (and below, without a token, here)."""
    responses = ctx.operation.definition.raw.get("responses", {})
    return "text/event-stream" in responses.get("200", {}).get("content", {})


# A valid set of fault flags would break the pipeline under attack on purpose (a crash flag kills
# a service at every restart): PUT /v1/admin/faults is attacked without a token only, its
# validation tested in tests/integration/gateway/test_admin_faults.py and tests/unit/kit/test_faults.py.
schema = (
    schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict(CONFIG))
    .exclude(streams_events)
    .exclude(method="PUT", path="/v1/admin/faults")
)
anonymous = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict(ANONYMOUS_CONFIG)).include(
    lambda ctx: "security" in ctx.operation.definition.raw
)


def test_the_gateway_serves_the_document_under_test(pipeline: Pipeline) -> None:
    served = httpx.get(f"{pipeline.gateway_url}/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == DOCUMENT


def every_error_is_a_problem(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Beyond the document: any 4xx or 5xx, documented for the operation or not (a 405, say), is
    problem+json whose status, code and type agree (docs/errors.md)."""
    if response.status_code < 400:
        return None
    assert response.headers.get("content-type") == [PROBLEM_MEDIA_TYPE], response.headers.get("content-type")
    problem = response.json()
    assert problem["status"] == response.status_code, problem
    assert problem["type"] == problem_type(problem["code"]), problem
    return True


@schema.parametrize()
def test_every_operation_answers_within_its_documented_responses(case: Case[Any], pipeline: Pipeline) -> None:
    case.call_and_validate(base_url=pipeline.gateway_url, additional_checks=[every_error_is_a_problem])


# A body that is not JSON at all, or larger than the limit, is refused as it is read, before any
# route or token is looked at.
UNREADABLE_BODY = {"MALFORMED_JSON", "BAD_REQUEST", "BODY_TOO_LARGE"}


def a_401_challenges_for_a_bearer_token(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """The operation's own method (not a probe with another, which is a 405) is refused for want of a
    token, unless its body cannot even be read."""
    if case.method.upper() != case.operation.method.upper():
        return None
    if response.status_code in {400, 413} and response.json()["code"] in UNREADABLE_BODY:
        return None
    assert response.status_code == 401, response.status_code
    [challenge] = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="orderflow"'), challenge
    return True


@anonymous.parametrize()
def test_every_operation_that_needs_a_token_answers_a_documented_401_without_a_valid_one(
    case: Case[Any], pipeline: Pipeline
) -> None:
    case.call_and_validate(
        base_url=pipeline.gateway_url,
        additional_checks=[every_error_is_a_problem, a_401_challenges_for_a_bearer_token],
    )
