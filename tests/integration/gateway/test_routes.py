"""Every route's happy path and the shape of its JSON, for a customer reading its own data
(who may do what is in test_auth.py)."""

import uuid
from datetime import datetime
from typing import Any

import httpx

from tests.integration.gateway.fakes import Fakes
from tests.support.tokens import as_customer

CUSTOMER = "customer-routes"


def new_customer() -> str:
    return f"customer-{uuid.uuid4().hex[:12]}"


async def place_order(gateway: httpx.AsyncClient, customer_id: str, quantity: int = 2) -> httpx.Response:
    return await gateway.post(
        "/v1/orders",
        json={"customer_id": customer_id, "items": [{"sku": "SKU-1", "quantity": quantity}]},
        headers=as_customer(customer_id),
    )


async def test_creating_an_order_answers_201_with_the_order_and_its_location(gateway: httpx.AsyncClient) -> None:
    customer_id = new_customer()
    response = await gateway.post(
        "/v1/orders",
        json={"customer_id": customer_id, "items": [{"sku": "SKU-1", "quantity": 2}, {"sku": "SKU-2", "quantity": 1}]},
        headers=as_customer(customer_id),
    )

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    order = response.json()
    assert response.headers["location"] == f"/v1/orders/{order['order_id']}"
    assert set(order) == {"order_id", "customer_id", "status", "items", "total_cents", "currency", "created_at"}
    assert uuid.UUID(order["order_id"])
    assert order["customer_id"] == customer_id
    assert order["status"] == "CREATED"
    assert order["items"] == [
        {"sku": "SKU-1", "quantity": 2, "unit_price_cents": 1250},
        {"sku": "SKU-2", "quantity": 1, "unit_price_cents": 500},
    ]
    assert order["total_cents"] == 3000
    assert order["currency"] == "EUR"
    assert datetime.fromisoformat(order["created_at"]).utcoffset() is not None


async def test_an_order_can_be_read_back_at_its_location(gateway: httpx.AsyncClient) -> None:
    customer_id = new_customer()
    created = await place_order(gateway, customer_id)

    response = await gateway.get(created.headers["location"], headers=as_customer(customer_id))

    assert response.status_code == 200
    assert response.json() == created.json()


async def test_a_customers_orders_come_a_page_at_a_time(gateway: httpx.AsyncClient, fakes: Fakes) -> None:
    customer_id = new_customer()
    placed = [(await place_order(gateway, customer_id, quantity)).json() for quantity in (1, 2, 3)]
    await place_order(gateway, new_customer())

    headers = as_customer(customer_id)
    first = await gateway.get("/v1/orders", params={"customer_id": customer_id, "page_size": 2}, headers=headers)
    assert first.status_code == 200
    token = first.json()["next_page_token"]
    second = await gateway.get(
        "/v1/orders", params={"customer_id": customer_id, "page_size": 2, "page_token": token}, headers=headers
    )

    assert first.json()["orders"] == placed[:2]
    assert token is not None
    assert second.json() == {"orders": placed[2:], "next_page_token": None}
    assert fakes.orders.behaviour.calls


async def test_a_customer_without_orders_gets_an_empty_last_page(gateway: httpx.AsyncClient) -> None:
    customer_id = new_customer()

    response = await gateway.get("/v1/orders", params={"customer_id": customer_id}, headers=as_customer(customer_id))

    assert response.status_code == 200
    assert response.json() == {"orders": [], "next_page_token": None}


async def test_products_list_sku_name_price_currency_and_availability(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v1/products")

    assert response.status_code == 200
    assert response.json() == {
        "products": [
            {"sku": "SKU-1", "name": "Product SKU-1", "price_cents": 1250, "currency": "EUR", "available": 10},
            {"sku": "SKU-2", "name": "Product SKU-2", "price_cents": 500, "currency": "EUR", "available": 10},
        ]
    }


async def test_a_loyalty_balance_has_points_and_awarded_orders(gateway: httpx.AsyncClient, fakes: Fakes) -> None:
    customer_id = new_customer()
    fakes.loyalty.points[customer_id] = 30

    response = await gateway.get(f"/v1/customers/{customer_id}/loyalty", headers=as_customer(customer_id))

    assert response.status_code == 200
    assert response.json() == {"customer_id": customer_id, "points": 30, "orders_awarded": 1}


async def test_openapi_documents_every_route_with_problem_responses(gateway: httpx.AsyncClient) -> None:
    openapi = (await gateway.get("/openapi.json")).json()

    create = openapi["paths"]["/v1/orders"]["post"]
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OrderOut"
    }
    for status in ("400", "404", "409", "415", "422", "500", "503", "504"):
        assert create["responses"][status]["content"]["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/ProblemDetails"
        }, status
    assert set(openapi["paths"]) == {
        "/v1/orders",
        "/v1/orders/{order_id}",
        "/v1/products",
        "/v1/products/events",
        "/v1/customers/{customer_id}/loyalty",
        "/v1/admin/restock",
        "/v1/admin/orders:import",
        "/v1/orders/{order_id}/events",
        "/v1/events",
        "/v1/admin/dead-letters",
        "/v1/admin/dead-letters/{sequence}",
        "/v1/admin/dead-letters/{sequence}/replay",
        "/v1/admin/faults",
        "/v1/admin/pipeline",
        "/v1/admin/reconciliation",
        "/healthz",
        "/readyz",
    }
    assert "HTTPValidationError" not in openapi["components"]["schemas"]
    assert (await gateway.get("/docs")).status_code == 200


async def test_openapi_documents_the_event_streams_and_the_dead_letter_endpoints(gateway: httpx.AsyncClient) -> None:
    paths = (await gateway.get("/openapi.json")).json()["paths"]

    def codes(responses: dict[str, Any], status: str) -> set[str]:
        problem = responses[status]["content"]["application/problem+json"]
        assert problem["schema"] == {"$ref": "#/components/schemas/ProblemDetails"}
        return set(problem.get("examples", {}))

    for path, problems in (
        ("/v1/orders/{order_id}/events", {"400", "401", "403", "404", "422", "502", "503", "504"}),
        ("/v1/events", {"400", "401", "403", "422", "503", "504"}),
    ):
        responses = paths[path]["get"]["responses"]
        [(media_type, stream)] = responses["200"]["content"].items()
        assert media_type == "text/event-stream"
        assert "event: " in stream["example"]
        assert "id: " in stream["example"]
        assert "retry: " in stream["example"]
        assert problems <= set(responses)
        assert "INVALID_LAST_EVENT_ID" in codes(responses, "400")
        assert "DEPENDENCY_UNAVAILABLE" in codes(responses, "503")
        [header] = [parameter for parameter in paths[path]["get"]["parameters"] if parameter["in"] == "header"]
        assert header["name"] == "Last-Event-ID"

    replay = paths["/v1/admin/dead-letters/{sequence}/replay"]["post"]
    assert {"400", "401", "403", "404", "409", "415", "422", "503", "504"} <= set(replay["responses"])
    assert replay["requestBody"]["content"]["application/json"]["schema"]["anyOf"][0] == {
        "$ref": "#/components/schemas/ReplayIn"
    }
    assert "DEAD_LETTER_NOT_FOUND" in codes(replay["responses"], "404")
    assert "DEAD_LETTER_NOT_REPLAYABLE" in codes(replay["responses"], "409")
    assert {"401", "403", "404", "422", "503"} <= set(paths["/v1/admin/dead-letters/{sequence}"]["get"]["responses"])
    assert {"401", "403", "422", "503"} <= set(paths["/v1/admin/dead-letters"]["get"]["responses"])


async def test_openapi_documents_the_restock_with_examples_and_every_problem(gateway: httpx.AsyncClient) -> None:
    restock = (await gateway.get("/openapi.json")).json()["paths"]["/v1/admin/restock"]["post"]

    examples = restock["requestBody"]["content"]["application/json"]["examples"]
    assert [example["value"]["lines"][0]["sku"] for example in examples.values()] == ["SKU-1", "MUG-RED"]
    assert restock["security"] == [{"bearer": []}]
    assert restock["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RestockSummaryOut"
    }
    problems = {status for status, response in restock["responses"].items() if status != "200"}
    assert problems == {"400", "401", "403", "404", "409", "413", "415", "422", "429", "500", "502", "503", "504"}
