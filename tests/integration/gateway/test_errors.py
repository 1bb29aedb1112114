"""Every error is application/problem+json with the right HTTP status and stable code."""

import asyncio
import uuid
from typing import Any

import grpc
import httpx
import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings
from orderflow_kit.errors import (
    ServiceError,
    already_exists,
    deadline_exceeded,
    failed_precondition,
    invalid_argument,
    not_found,
    unavailable,
)
from tests.integration.gateway.conftest import client_of
from tests.integration.gateway.fakes import INTERNAL_MESSAGE, Fakes
from tests.support.tokens import as_customer

PROBLEM_MEMBERS = {"type", "title", "status", "detail", "code", "instance", "request_id"}
AN_ORDER = {"customer_id": "customer-1", "items": [{"sku": "SKU-1", "quantity": 1}]}
# Every request below is customer-1's own, so only the error under test can refuse it.
AS_CUSTOMER = as_customer("customer-1")


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_MEMBERS
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"] == f"https://orderflow.dev/problems/{code.lower().replace('_', '-')}"
    assert body["instance"] == response.request.url.path
    assert body["request_id"] == response.headers["x-request-id"]
    return body


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (invalid_argument("items[0].sku is not a valid SKU"), 400, "VALIDATION_FAILED"),
        (not_found("UNKNOWN_SKU", "unknown SKU(s): SKU-404", skus="SKU-404"), 404, "UNKNOWN_SKU"),
        (failed_precondition("OUT_OF_STOCK", "not enough stock", skus="SKU-1"), 409, "OUT_OF_STOCK"),
        (already_exists("RESERVATION_CONFLICT", "reserved other lines"), 409, "RESERVATION_CONFLICT"),
        (unavailable("INVENTORY_UNAVAILABLE", "inventory is unavailable"), 503, "INVENTORY_UNAVAILABLE"),
        (deadline_exceeded("INVENTORY_TIMEOUT", "inventory did not answer"), 504, "INVENTORY_TIMEOUT"),
        (grpc.StatusCode.INVALID_ARGUMENT, 400, "VALIDATION_FAILED"),
        (grpc.StatusCode.NOT_FOUND, 404, "NOT_FOUND"),
        (grpc.StatusCode.FAILED_PRECONDITION, 409, "CONFLICT"),
        (grpc.StatusCode.ALREADY_EXISTS, 409, "ALREADY_EXISTS"),
        (grpc.StatusCode.UNAUTHENTICATED, 401, "UNAUTHENTICATED"),
        (grpc.StatusCode.PERMISSION_DENIED, 403, "PERMISSION_DENIED"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "RATE_LIMITED"),
        (grpc.StatusCode.UNAVAILABLE, 503, "DEPENDENCY_UNAVAILABLE"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504, "DEPENDENCY_TIMEOUT"),
        # A service's own failure, whichever of these statuses it comes as.
        *(
            (status, 502, "DEPENDENCY_FAILED")
            for status in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNIMPLEMENTED)
        ),
    ],
    ids=lambda value: value.code if isinstance(value, ServiceError) else str(value),
)
async def test_a_service_error_becomes_its_problem(
    gateway: httpx.AsyncClient, fakes: Fakes, failure: ServiceError | grpc.StatusCode, status: int, code: str
) -> None:
    fakes.orders.behaviour.failure = failure

    body = assert_problem(await gateway.post("/v1/orders", json=AN_ORDER, headers=AS_CUSTOMER), status, code)

    if isinstance(failure, ServiceError):
        assert body["detail"] == failure.detail
    assert INTERNAL_MESSAGE not in body["detail"]


async def test_out_of_stock_names_the_short_skus(gateway: httpx.AsyncClient, fakes: Fakes) -> None:
    fakes.orders.behaviour.failure = failed_precondition("OUT_OF_STOCK", "not enough stock", skus="SKU-1,SKU-2")

    body = assert_problem(await gateway.post("/v1/orders", json=AN_ORDER, headers=AS_CUSTOMER), 409, "OUT_OF_STOCK")

    assert body["title"] == "Out of stock"
    assert body["skus"] == ["SKU-1", "SKU-2"]


async def test_an_unknown_order_is_a_404_order_not_found(gateway: httpx.AsyncClient) -> None:
    assert_problem(await gateway.get(f"/v1/orders/{uuid.uuid4()}", headers=AS_CUSTOMER), 404, "ORDER_NOT_FOUND")


@pytest.mark.parametrize(
    ("path", "fake"),
    [
        ("/v1/products", "inventory"),
        ("/v1/customers/customer-1/loyalty", "loyalty"),
        ("/v1/orders?customer_id=customer-1", "orders"),
    ],
)
async def test_every_route_maps_service_errors(gateway: httpx.AsyncClient, fakes: Fakes, path: str, fake: str) -> None:
    getattr(fakes, fake).behaviour.failure = unavailable("DATABASE_UNAVAILABLE", "the database is unavailable")

    assert_problem(await gateway.get(path, headers=AS_CUSTOMER), 503, "DATABASE_UNAVAILABLE")


async def test_a_service_that_does_not_answer_in_time_is_a_504(gateway: httpx.AsyncClient, fakes: Fakes) -> None:
    fakes.inventory.behaviour.held = asyncio.Event()

    assert_problem(await gateway.get("/v1/products"), 504, "DEPENDENCY_TIMEOUT")


async def test_a_service_that_is_down_is_a_503(gateway: httpx.AsyncClient, fakes: Fakes) -> None:
    await fakes.loyalty_server.server.stop(None)

    response = await gateway.get("/v1/customers/customer-1/loyalty", headers=AS_CUSTOMER)

    body = assert_problem(response, 503, "DEPENDENCY_UNAVAILABLE")
    assert fakes.loyalty_server.address not in body["detail"]


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"customer_id": "customer-1"}, ["body", "items"]),
        ({"customer_id": "customer-1", "items": [{"sku": "SKU-1"}]}, ["body", "items", 0, "quantity"]),
        ({"customer_id": "customer-1", "items": [{"sku": "SKU-1", "quantity": "1"}]}, ["body", "items", 0, "quantity"]),
        ({"customer_id": "customer-1", "items": [{"sku": "SKU-1", "quantity": 1.5}]}, ["body", "items", 0, "quantity"]),
        ({"customer_id": "customer-1", "items": [{"sku": "SKU-1", "quantity": 0}]}, ["body", "items", 0, "quantity"]),
        ({"customer_id": "customer-1", "items": [{"sku": "SKU-1", "quantity": -3}]}, ["body", "items", 0, "quantity"]),
        ({"customer_id": 42, "items": [{"sku": "SKU-1", "quantity": 1}]}, ["body", "customer_id"]),
        ({"customer_id": "customer-1", "items": [{"sku": "bad sku", "quantity": 1}]}, ["body", "items", 0, "sku"]),
        ({**AN_ORDER, "discount": 100}, ["body", "discount"]),
        ({"customer_id": "customer-1", "items": [{"sku": "SKU-1", "quantity": 1, "x": 1}]}, ["body", "items", 0, "x"]),
        ({"customer_id": "customer-1", "items": []}, ["body", "items"]),
        ({"customer_id": "customer-1", "items": [{"sku": "SKU-1", "quantity": 1}] * 101}, ["body", "items"]),
        ([], ["body"]),
    ],
)
async def test_a_body_that_breaks_the_schema_is_a_422_naming_the_field(
    gateway: httpx.AsyncClient, fakes: Fakes, body: Any, location: list[str | int]
) -> None:
    problem = assert_problem(await gateway.post("/v1/orders", json=body, headers=AS_CUSTOMER), 422, "VALIDATION_FAILED")

    assert location in [error["location"] for error in problem["errors"]]
    assert all(error["message"] and error["type"] for error in problem["errors"])
    assert fakes.orders.behaviour.calls == []


@pytest.mark.parametrize(
    "path",
    [
        "/v1/orders/not-a-uuid",
        f"/v1/orders/{str(uuid.uuid4()).upper()}",
        "/v1/orders",
        "/v1/orders?customer_id=has%20space",
        "/v1/orders?customer_id=customer-1&page_size=0",
        "/v1/orders?customer_id=customer-1&page_size=ten",
        "/v1/customers/-bad/loyalty",
    ],
)
async def test_a_bad_path_or_query_parameter_is_a_422(gateway: httpx.AsyncClient, path: str) -> None:
    problem = assert_problem(await gateway.get(path, headers=AS_CUSTOMER), 422, "VALIDATION_FAILED")

    assert problem["errors"][0]["location"][0] in {"path", "query"}


@pytest.mark.parametrize("content", [b'{"customer_id": "c-1", "items": [', b"not json", b"{'single': 'quotes'}"])
async def test_malformed_json_is_a_400(gateway: httpx.AsyncClient, content: bytes) -> None:
    headers = {"content-type": "application/json", **AS_CUSTOMER}

    response = await gateway.post("/v1/orders", content=content, headers=headers)

    assert_problem(response, 400, "MALFORMED_JSON")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_that_is_not_json_is_a_415(gateway: httpx.AsyncClient, content_type: str | None) -> None:
    headers = {"content-type": content_type, **AS_CUSTOMER} if content_type else AS_CUSTOMER

    response = await gateway.post("/v1/orders", content=b'{"customer_id": "c-1"}', headers=headers)

    assert_problem(response, 415, "UNSUPPORTED_MEDIA_TYPE")


async def test_an_unknown_route_is_a_404_problem(gateway: httpx.AsyncClient) -> None:
    assert_problem(await gateway.get("/v1/nothing-here"), 404, "NOT_FOUND")


@pytest.mark.parametrize(("path", "allow"), [("/v1/products", "GET"), ("/v1/orders", "GET, POST")])
async def test_a_wrong_method_is_a_405_problem_with_allow(gateway: httpx.AsyncClient, path: str, allow: str) -> None:
    response = await gateway.delete(path)

    assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == allow


async def test_an_unexpected_failure_is_a_500_problem_without_internals(settings: GatewaySettings) -> None:
    app = create_app(settings)

    async def broken() -> None:
        raise RuntimeError("secret connection string postgres://admin:hunter2@db")

    app.add_api_route("/v1/broken", broken)
    async with client_of(app) as gateway:
        response = await gateway.get("/v1/broken")

    body = assert_problem(response, 500, "INTERNAL_ERROR")
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert body["detail"]
