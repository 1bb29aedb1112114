"""schemathesis against the real gateway in front of the real services: every operation, valid and
invalid requests, checked against the OpenAPI document."""

from typing import Any

import httpx
import schemathesis
from schemathesis import Case, CheckContext, Response

from gateway.app import create_app
from gateway.problems import PROBLEM_MEDIA_TYPE, problem_type
from tests.support.pipeline import Pipeline

CONFIG = {
    "seed": 20261113,
    "generation": {"deterministic": True, "database": "none", "max-examples": 60},
    "request-timeout": 10,
    "operations": [
        {
            # A page token is opaque: one the API never issued is schema-valid and still refused (400).
            "include-name": "GET /v1/orders",
            "checks": {"positive_data_acceptance": {"expected-statuses": ["200", "400"]}},
        },
        {
            # JSON Schema cannot say "one line per SKU", so a schema-valid order may repeat one: 422.
            # 404 UNKNOWN_SKU and 409 OUT_OF_STOCK are answers to valid orders too.
            "include-name": "POST /v1/orders",
            "checks": {"positive_data_acceptance": {"expected-statuses": ["201", "404", "409", "422"]}},
        },
    ],
}

DOCUMENT = create_app().openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict(CONFIG))


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
