"""What the rate limits announce, without any server: the structured fields, the client address
a budget is kept for, and the 429 and the fields in the OpenAPI document of every /v1 operation."""

import pytest

from gateway.app import create_app
from gateway.problems import PROBLEM_MEDIA_TYPE
from gateway.rate_limits import Decision, Policy, client_address, too_many_requests
from gateway.settings import GatewaySettings
from tests.support.tokens import JWT_SECRET


def test_a_policy_announces_its_burst_and_the_seconds_to_earn_it_back() -> None:
    assert Policy("customer", per_second=10.0, burst=20).field() == '"customer";q=20;w=2'
    assert Policy("ip", per_second=0.5, burst=3).field() == '"ip";q=3;w=6'


def test_a_decision_announces_what_is_left_and_when_all_of_it_is_back() -> None:
    decision = Decision(Policy("ip", 1.0, 5), allowed=True, remaining=4, retry_after_seconds=0, reset_seconds=1)

    assert decision.field() == '"ip";r=4;t=1'


def test_a_429_says_how_long_to_wait_in_whole_seconds_at_least_one() -> None:
    refused = Decision(Policy("customer", 100.0, 1), allowed=False, remaining=0, retry_after_seconds=0, reset_seconds=1)

    problem = too_many_requests(refused, "this customer")

    assert (problem.status, problem.code) == (429, "RATE_LIMITED")
    assert problem.headers == {"Retry-After": "1"}


@pytest.mark.parametrize(
    ("client", "address"),
    [
        (("203.0.113.7", 50000), "203.0.113.7"),
        (("2001:db8:1:2:3:4:5:6", 50000), "2001:db8:1:2::/64"),
        (None, "unknown"),
    ],
)
def test_a_budget_is_kept_per_ipv4_address_and_per_ipv6_64(client: tuple[str, int] | None, address: str) -> None:
    assert client_address({"type": "http", "client": client}) == address


DOCUMENT = create_app(GatewaySettings(jwt_secret=JWT_SECRET)).openapi()


def test_every_v1_operation_documents_a_429_problem_with_retry_after() -> None:
    operations = [
        (path, operation) for path, item in DOCUMENT["paths"].items() if path.startswith("/v1/") for operation in item
    ]

    assert operations
    for path, operation in operations:
        refused = DOCUMENT["paths"][path][operation]["responses"]["429"]
        assert refused["content"] == {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
        assert "Retry-After" in refused["headers"], (path, operation)


def test_every_answer_of_a_v1_operation_documents_the_fields_and_health_none() -> None:
    for path, item in DOCUMENT["paths"].items():
        for operation in item.values():
            for response in operation["responses"].values():
                announced = {"RateLimit", "RateLimit-Policy"} <= set(response.get("headers", {}))
                assert announced == path.startswith("/v1/"), path
