"""Who may call what, over real HTTP handling in front of the in-test services, with HS256 tokens
signed with the development secret: a missing or refused token is a 401 with a Bearer challenge,
a missing scope a 403, and a customer places orders for itself and sees only its own data."""

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from orderflow_contracts.scopes import ADMIN_SCOPE
from tests.integration.gateway.fakes import Fakes
from tests.integration.gateway.test_errors import assert_problem
from tests.support.tokens import as_admin, as_customer, bearer, claims, signed

AN_ORDER = {"items": [{"sku": "SKU-1", "quantity": 1}]}
CHALLENGE = 'Bearer realm="orderflow"'
# Every operation on a customer's data, each about customer c-1.
CUSTOMER_OPERATIONS = [
    ("POST", "/v1/orders"),
    ("GET", "/v1/orders?customer_id=c-1"),
    ("GET", f"/v1/orders/{uuid.uuid4()}"),
    ("GET", "/v1/customers/c-1/loyalty"),
]


def without(token_claims: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in token_claims.items() if key != name}


def nothing_was_asked(fakes: Fakes) -> bool:
    return not (fakes.orders.behaviour.calls or fakes.loyalty.behaviour.calls)


async def call(gateway: httpx.AsyncClient, method: str, url: str, headers: dict[str, str]) -> httpx.Response:
    return await gateway.request(method, url, json=AN_ORDER if method == "POST" else None, headers=headers)


@pytest.mark.parametrize(("method", "url"), CUSTOMER_OPERATIONS)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic Yy0xOnNlY3JldA=="}], ids=["none", "basic"])
async def test_without_a_bearer_token_every_customer_operation_is_a_401_with_a_challenge(
    gateway: httpx.AsyncClient, fakes: Fakes, method: str, url: str, headers: dict[str, str]
) -> None:
    response = await call(gateway, method, url, headers)

    assert_problem(response, 401, "AUTHENTICATION_REQUIRED")
    assert response.headers["www-authenticate"] == CHALLENGE
    assert nothing_was_asked(fakes)


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "/v1/orders/not-an-order-id", None),
        ("GET", "/v1/orders?customer_id=has%20space", None),
        ("POST", "/v1/orders", {"items": [], "coupon": "FREE"}),
    ],
)
async def test_the_token_is_checked_before_the_request_itself(
    gateway: httpx.AsyncClient, method: str, url: str, body: Any
) -> None:
    """Without a token a malformed request learns nothing about what is wrong with it."""
    response = await gateway.request(method, url, json=body)

    assert_problem(response, 401, "AUTHENTICATION_REQUIRED")


async def test_a_body_that_is_not_json_is_refused_as_it_is_read_even_before_the_token(
    gateway: httpx.AsyncClient,
) -> None:
    response = await gateway.post("/v1/orders", content=b"{not json", headers={"content-type": "application/json"})

    assert_problem(response, 400, "MALFORMED_JSON")


REFUSED_TOKENS = {
    "expired": signed(claims("c-1", expires_in=-timedelta(hours=1))),
    "malformed": "not.a-jwt",
    "wrong signature": signed(claims("c-1"), "some-other-secret-that-is-long-enough-for-hs256"),
    "no exp": signed(without(claims("c-1"), "exp")),
    "no sub": signed(without(claims("c-1"), "sub")),
    "unsigned (alg none)": signed(claims("c-1"), None, algorithm="none"),
    "scope not a string": signed({**claims("c-1"), "scope": ["orders"]}),
    "an audience nobody here is": signed({**claims("c-1"), "aud": "another-application"}),
}


@pytest.mark.parametrize("token", REFUSED_TOKENS.values(), ids=REFUSED_TOKENS.keys())
async def test_a_refused_token_is_a_401_invalid_token_and_nothing_is_written(
    gateway: httpx.AsyncClient, fakes: Fakes, token: str
) -> None:
    response = await gateway.post("/v1/orders", json=AN_ORDER, headers=bearer(token))

    problem = assert_problem(response, 401, "INVALID_TOKEN")
    assert response.headers["www-authenticate"].startswith(f'{CHALLENGE}, error="invalid_token", error_description="')
    assert problem["detail"].startswith("The bearer token was refused: ")
    assert nothing_was_asked(fakes)
    assert fakes.orders.orders == []


async def test_a_token_a_few_seconds_past_its_exp_still_passes_for_clock_skew(gateway: httpx.AsyncClient) -> None:
    token = signed(claims("c-1", expires_in=-timedelta(seconds=5)))

    response = await gateway.get("/v1/customers/c-1/loyalty", headers=bearer(token))

    assert response.status_code == 200, response.text


async def test_an_order_without_a_customer_id_is_placed_for_the_tokens_customer(
    gateway: httpx.AsyncClient, fakes: Fakes
) -> None:
    response = await gateway.post("/v1/orders", json=AN_ORDER, headers=as_customer("c-own"))

    assert response.status_code == 201, response.text
    assert response.json()["customer_id"] == "c-own"
    assert [order.customer_id for order in fakes.orders.orders] == ["c-own"]


@pytest.mark.parametrize("headers", [as_customer("c-1"), as_admin("ops-1")], ids=["customer", "admin"])
async def test_an_order_for_another_customer_is_a_403_and_nothing_is_written(
    gateway: httpx.AsyncClient, fakes: Fakes, headers: dict[str, str]
) -> None:
    response = await gateway.post("/v1/orders", json={"customer_id": "c-other", **AN_ORDER}, headers=headers)

    assert_problem(response, 403, "CUSTOMER_FORBIDDEN")
    assert nothing_was_asked(fakes)


@pytest.mark.parametrize(("method", "url"), CUSTOMER_OPERATIONS)
@pytest.mark.parametrize("scope", ["", "profile email"], ids=["no scope", "other scopes"])
async def test_a_token_without_scope_orders_or_admin_is_a_403_insufficient_scope(
    gateway: httpx.AsyncClient, fakes: Fakes, method: str, url: str, scope: str
) -> None:
    response = await call(gateway, method, url, bearer(signed(claims("c-1", scope))))

    assert_problem(response, 403, "INSUFFICIENT_SCOPE")
    assert response.headers["www-authenticate"] == f'{CHALLENGE}, error="insufficient_scope", scope="orders"'
    assert nothing_was_asked(fakes)


async def test_scope_admin_alone_reads_but_does_not_order(gateway: httpx.AsyncClient, fakes: Fakes) -> None:
    headers = bearer(signed(claims("ops-1", ADMIN_SCOPE)))

    ordered = await gateway.post("/v1/orders", json=AN_ORDER, headers=headers)
    read = await gateway.get("/v1/customers/c-1/loyalty", headers=headers)

    assert_problem(ordered, 403, "INSUFFICIENT_SCOPE")
    assert fakes.orders.orders == []
    assert read.status_code == 200


async def test_another_customers_order_is_a_404_exactly_like_one_that_does_not_exist(
    gateway: httpx.AsyncClient, fakes: Fakes
) -> None:
    created = await gateway.post("/v1/orders", json=AN_ORDER, headers=as_customer("c-owner"))
    theirs = created.json()["order_id"]
    nobodys = str(uuid.uuid4())

    seen = await gateway.get(f"/v1/orders/{theirs}", headers=as_customer("c-nosy"))
    missing = await gateway.get(f"/v1/orders/{nobodys}", headers=as_customer("c-nosy"))

    def shown(response: httpx.Response, order_id: str) -> dict[str, Any]:
        problem = assert_problem(response, 404, "ORDER_NOT_FOUND")
        ignored = {"instance", "request_id"}
        return {key: str(value).replace(order_id, "ID") for key, value in problem.items() if key not in ignored}

    assert shown(seen, theirs) == shown(missing, nobodys)
    assert set(seen.headers) == set(missing.headers)
    assert "c-owner" not in seen.text


@pytest.mark.parametrize("url", ["/v1/orders?customer_id=c-owner", "/v1/customers/c-owner/loyalty"])
async def test_another_customers_orders_and_balance_are_a_403(
    gateway: httpx.AsyncClient, fakes: Fakes, url: str
) -> None:
    response = await gateway.get(url, headers=as_customer("c-nosy"))

    assert_problem(response, 403, "CUSTOMER_FORBIDDEN")
    assert nothing_was_asked(fakes)


async def test_an_admin_reads_every_customers_orders_and_balance(gateway: httpx.AsyncClient, fakes: Fakes) -> None:
    created = await gateway.post("/v1/orders", json=AN_ORDER, headers=as_customer("c-owner"))
    fakes.loyalty.points["c-owner"] = 12
    admin = as_admin("ops-1")

    order = await gateway.get(created.headers["location"], headers=admin)
    listed = await gateway.get("/v1/orders", params={"customer_id": "c-owner"}, headers=admin)
    balance = await gateway.get("/v1/customers/c-owner/loyalty", headers=admin)

    assert order.json() == created.json()
    assert listed.json() == {"orders": [created.json()], "next_page_token": None}
    assert balance.json() == {"customer_id": "c-owner", "points": 12, "orders_awarded": 1}


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v1/products", "/docs", "/openapi.json"])
async def test_health_the_catalog_and_the_api_docs_need_no_token(gateway: httpx.AsyncClient, path: str) -> None:
    response = await gateway.get(path)

    assert response.status_code == 200, response.text


async def test_openapi_declares_the_bearer_scheme_and_each_operation_that_needs_it(
    gateway: httpx.AsyncClient,
) -> None:
    openapi = (await gateway.get("/openapi.json")).json()

    scheme = openapi["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    needs_token = {
        f"{method.upper()} {path}"
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
        if operation.get("security") == [{"bearer": []}]
    }
    assert needs_token == {
        "POST /v1/orders",
        "GET /v1/orders",
        "GET /v1/orders/{order_id}",
        "GET /v1/customers/{customer_id}/loyalty",
        "POST /v1/admin/restock",
        "POST /v1/admin/orders:import",
        "GET /v1/orders/{order_id}/events",
        "GET /v1/events",
        "GET /v1/admin/dead-letters",
        "GET /v1/admin/dead-letters/{sequence}",
        "POST /v1/admin/dead-letters/{sequence}/replay",
        "GET /v1/admin/faults",
        "GET /v1/admin/pipeline",
        "GET /v1/admin/reconciliation",
        "PUT /v1/admin/faults",
    }
    problem = {"$ref": "#/components/schemas/ProblemDetails"}
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if f"{method.upper()} {path}" in needs_token:
                for status in ("401", "403"):
                    assert responses[status]["content"]["application/problem+json"]["schema"] == problem
                assert "WWW-Authenticate" in responses["401"]["headers"]
            else:
                assert "security" not in operation
                assert not {"401", "403"} & set(responses), path
