"""Through the gateway, with every service a separate process on real servers: an order is
reserved, stored, published and awarded exactly once, even when things go wrong."""

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from orderflow_contracts.streams import ORDER_CREATED_SUBJECT, ORDERS_STREAM
from tests.e2e.support import (
    available,
    loyalty,
    new_customer,
    place,
    publish,
    stream_headers,
)
from tests.support.events import order_created
from tests.support.jetstream import acked_through, jetstream
from tests.support.pipeline import Pipeline
from tests.support.polling import eventually
from tests.support.tokens import as_admin, as_customer

pytestmark = pytest.mark.e2e


async def test_lines_for_one_sku_add_up_to_one_line_past_the_per_line_maximum(api: httpx.AsyncClient) -> None:
    """The OpenAPI document cannot say "one line per SKU", so lines add up; the sum may pass a line's
    1000 units, and orders, inventory and the OrderCreated event all take it (MAX_SKU_QUANTITY)."""
    customer = new_customer()
    response = await place(api, customer, ("E2E-TEE", 1000), ("E2E-MUG", 1), ("E2E-TEE", 1000), ("E2E-TEE", 5))

    assert response.status_code == 201, response.text
    assert response.json()["items"] == [
        {"sku": "E2E-MUG", "quantity": 1, "unit_price_cents": 1250},
        {"sku": "E2E-TEE", "quantity": 2005, "unit_price_cents": 2599},
    ]
    awarded = await eventually(
        lambda: loyalty(api, customer), lambda b: b["orders_awarded"] >= 1, what="points for the order"
    )
    assert awarded["points"] == (2005 * 2599 + 1250) // 100


async def test_an_order_is_created_published_and_awarded_exactly_its_points(api: httpx.AsyncClient) -> None:
    customer = new_customer()
    response = await place(api, customer, ("E2E-MUG", 2), ("E2E-TEE", 1))

    assert response.status_code == 201, response.text
    order = response.json()
    assert response.headers["location"] == f"/v1/orders/{order['order_id']}"
    assert order["status"] == "CREATED"
    assert order["customer_id"] == customer
    assert order["items"] == [
        {"sku": "E2E-MUG", "quantity": 2, "unit_price_cents": 1250},
        {"sku": "E2E-TEE", "quantity": 1, "unit_price_cents": 2599},
    ]
    assert order["total_cents"] == 2 * 1250 + 2599
    assert order["currency"] == "EUR"
    assert (await api.get(response.headers["location"], headers=as_customer(customer))).json() == order
    listed = (await api.get("/v1/orders", params={"customer_id": customer}, headers=as_customer(customer))).json()
    assert listed == {"orders": [order], "next_page_token": None}

    awarded = await eventually(
        lambda: loyalty(api, customer), lambda b: b["orders_awarded"] >= 1, what="points for the order"
    )
    assert awarded == {"customer_id": customer, "points": (2 * 1250 + 2599) // 100, "orders_awarded": 1}

    second = await place(api, customer, ("E2E-MUG", 1))
    assert second.status_code == 201, second.text
    balance = await eventually(
        lambda: loyalty(api, customer), lambda b: b["orders_awarded"] >= 2, what="points for the second order"
    )
    assert balance["points"] == (2 * 1250 + 2599) // 100 + 1250 // 100
    assert balance["orders_awarded"] == 2


async def test_a_customer_orders_as_itself_and_sees_only_its_own_data(api: httpx.AsyncClient) -> None:
    """The token names the customer; another customer's token sees nothing of it, an admin's sees all."""
    customer, other = new_customer(), new_customer()
    body = {"items": [{"sku": "E2E-MUG", "quantity": 1}]}

    anonymous = await api.post("/v1/orders", json=body)
    created = await api.post("/v1/orders", json=body, headers=as_customer(customer))

    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="orderflow"'
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["customer_id"] == customer
    location = created.headers["location"]
    assert (await api.get(location, headers=as_customer(other))).status_code == 404
    assert (
        await api.get("/v1/orders", params={"customer_id": customer}, headers=as_customer(other))
    ).status_code == 403
    assert (await api.get(f"/v1/customers/{customer}/loyalty", headers=as_customer(other))).status_code == 403
    assert (await api.get(location, headers=as_admin())).json() == order


async def test_concurrent_orders_never_oversell(api: httpx.AsyncClient) -> None:
    """200 customers race for a product with stock 50: exactly 50 win, stock ends at 0."""
    assert await available(api, "E2E-LIMITED") == 50

    responses = await asyncio.gather(*(place(api, new_customer(), ("E2E-LIMITED", 1)) for _ in range(200)))

    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 50, statuses
    assert statuses.count(409) == 150, statuses
    losers = [r for r in responses if r.status_code == 409]
    assert all(r.headers["content-type"].startswith("application/problem+json") for r in losers)
    assert {r.json()["code"] for r in losers} == {"OUT_OF_STOCK"}
    assert await available(api, "E2E-LIMITED") == 0
    winners = {r.json()["order_id"] for r in responses if r.status_code == 201}
    stored = await asyncio.gather(*(api.get(f"/v1/orders/{order_id}", headers=as_admin()) for order_id in winners))
    assert all(r.status_code == 200 for r in stored)


async def test_the_same_event_published_twice_awards_points_once(api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    """Same ce-id under two Nats-Msg-Ids: the broker stores both, the consumer's dedupe row wins."""
    customer = new_customer()
    event = order_created(customer, total_cents=4321)

    await publish(pipeline.nats_url, event.to_headers(msg_id=str(uuid.uuid4())), event.data)
    second = await publish(pipeline.nats_url, event.to_headers(msg_id=str(uuid.uuid4())), event.data)

    async with jetstream(pipeline.nats_url) as js:
        await eventually(lambda: acked_through(js, pipeline.consumer, second), what="loyalty consumed both copies")
    assert await loyalty(api, customer) == {"customer_id": customer, "points": 43, "orders_awarded": 1}


async def dead_letters(pipeline: Pipeline) -> list[dict[str, Any]]:
    return await asyncio.to_thread(_dlq_list, pipeline)


def _dlq_list(pipeline: Pipeline) -> list[dict[str, Any]]:
    result = orderflow(pipeline, "dlq", "list", "--consumer", pipeline.consumer, "--json")
    return [json.loads(line) for line in result.stdout.splitlines()]


def orderflow(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `orderflow` command as an operator would."""
    command = [str(Path(sys.executable).with_name("orderflow")), *args, "--nats-url", pipeline.nats_url]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


async def test_a_malformed_event_is_dead_lettered_and_a_fixed_replay_is_awarded_once(
    api: httpx.AsyncClient, pipeline: Pipeline, tmp_path: Path
) -> None:
    customer = new_customer()
    broken = order_created(customer, total_cents=1999)
    await publish(pipeline.nats_url, broken.to_headers(), b'{"order_id": "not even json')
    valid = order_created(new_customer(), total_cents=500)
    await publish(pipeline.nats_url, valid.to_headers(), valid.data)

    def ours(rows: list[dict[str, Any]]) -> bool:
        return any(row.get("ce_id") == broken.id for row in rows)

    rows = await eventually(lambda: dead_letters(pipeline), ours, what="the malformed event in DEAD_LETTERS")
    letter = next(row for row in rows if row.get("ce_id") == broken.id)
    assert letter["reason"] == "permanent"
    assert letter["subject"] == f"dlq.{pipeline.consumer}.{ORDER_CREATED_SUBJECT}"
    assert letter["error"]
    shown = json.loads(orderflow(pipeline, "dlq", "show", str(letter["sequence"])).stdout)
    assert shown["headers"]["ce-id"] == broken.id

    # The next valid event was not blocked by the dead one.
    assert (await eventually(lambda: loyalty(api, valid_customer(valid)), lambda b: b["orders_awarded"] == 1))[
        "points"
    ] == 5

    fixed = tmp_path / "fixed.json"
    fixed.write_bytes(broken.data)
    orderflow(pipeline, "dlq", "replay", str(letter["sequence"]), "--payload", str(fixed))
    balance = await eventually(lambda: loyalty(api, customer), lambda b: b["orders_awarded"] >= 1, what="replay")
    assert balance == {"customer_id": customer, "points": 19, "orders_awarded": 1}
    assert not ours(await dead_letters(pipeline))

    # The same event once more (a second replay, a duplicate): still awarded once, by ce-id.
    again = await publish(pipeline.nats_url, broken.to_headers(msg_id=str(uuid.uuid4())), broken.data)
    async with jetstream(pipeline.nats_url) as js:
        await eventually(lambda: acked_through(js, pipeline.consumer, again), what="duplicate")
    assert await loyalty(api, customer) == {"customer_id": customer, "points": 19, "orders_awarded": 1}


def valid_customer(event: Any) -> str:
    customer: str = json.loads(event.data)["customer_id"]
    return customer


async def test_orders_succeed_while_nats_is_down_and_every_event_is_awarded_once_after(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    nats_server = pipeline.infra.nats
    if nats_server is None:
        pytest.skip("NATS comes from ORDERFLOW_NATS_URL: not ours to stop")
    customer = new_customer()
    await asyncio.to_thread(nats_server.stop)
    try:
        responses = [await place(api, customer, ("E2E-MUG", quantity)) for quantity in (1, 2, 3, 4, 5)]
    finally:
        await asyncio.to_thread(nats_server.start)

    assert [r.status_code for r in responses] == [201] * 5, [r.text for r in responses]
    order_ids = {r.json()["order_id"] for r in responses}
    expected_points = sum(r.json()["total_cents"] // 100 for r in responses)
    balance = await eventually(
        lambda: loyalty(api, customer), lambda b: b["orders_awarded"] >= 5, within=60, what="all five awarded"
    )
    assert balance == {"customer_id": customer, "points": expected_points, "orders_awarded": 5}

    published = await stream_headers(pipeline.nats_url, ORDERS_STREAM, ORDER_CREATED_SUBJECT)
    ours = [h["ce-subject"] for h in published if h.get("ce-subject") in order_ids]
    assert sorted(ours) == sorted(order_ids), "each order's event is in the stream exactly once"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"customer_id": "CUSTOMER", "items": [{"sku": "NO-SUCH-SKU", "quantity": 1}]}, 404, "UNKNOWN_SKU"),
        ({"customer_id": "CUSTOMER", "items": [{"sku": "E2E-MUG", "quantity": 0}]}, 422, "VALIDATION_FAILED"),
        ({"customer_id": "CUSTOMER", "items": [{"sku": "E2E-MUG", "quantity": -3}]}, 422, "VALIDATION_FAILED"),
        ({"customer_id": "CUSTOMER", "items": [{"sku": "E2E-MUG", "quantity": "two"}]}, 422, "VALIDATION_FAILED"),
        ({"customer_id": "CUSTOMER", "items": [{"sku": "E2E-MUG", "quantity": 1.5}]}, 422, "VALIDATION_FAILED"),
        ({"customer_id": "CUSTOMER", "items": []}, 422, "VALIDATION_FAILED"),
        ({"customer_id": "CUSTOMER"}, 422, "VALIDATION_FAILED"),
        ({"customer_id": "someone-else", "items": [{"sku": "E2E-MUG", "quantity": 1}]}, 403, "CUSTOMER_FORBIDDEN"),
        ({"customer_id": 42, "items": [{"sku": "E2E-MUG", "quantity": 1}]}, 422, "VALIDATION_FAILED"),
        ({"customer_id": "CUSTOMER", "items": "E2E-MUG"}, 422, "VALIDATION_FAILED"),
        ({"customer_id": "CUSTOMER", "items": [{"sku": "E2E-MUG", "quantity": 10**9}]}, 422, "VALIDATION_FAILED"),
        ({"customer_id": "CUSTOMER", "items": [{"sku": "E2E-LIMITED", "quantity": 1000}]}, 409, "OUT_OF_STOCK"),
        (b'{"customer_id": "CUSTOMER", "items": [', 400, "MALFORMED_JSON"),
        (b"[1, 2, 3]", 422, "VALIDATION_FAILED"),
    ],
)
async def test_bad_input_is_a_clear_4xx_and_writes_nothing(
    api: httpx.AsyncClient, body: dict[str, Any] | bytes, status: int, code: str
) -> None:
    customer = new_customer()
    stock_before = {sku: await available(api, sku) for sku in ("E2E-MUG", "E2E-LIMITED")}
    headers = as_customer(customer)
    if isinstance(body, bytes):
        response = await api.post(
            "/v1/orders",
            content=body.replace(b"CUSTOMER", customer.encode()),
            headers={"content-type": "application/json", **headers},
        )
    else:
        payload = json.loads(json.dumps(body).replace("CUSTOMER", customer))
        response = await api.post("/v1/orders", json=payload, headers=headers)

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["title"]
    assert problem["detail"]
    assert "type" in problem
    assert {sku: await available(api, sku) for sku in stock_before} == stock_before
    listed = await api.get("/v1/orders", params={"customer_id": customer}, headers=headers)
    assert listed.json()["orders"] == []


async def test_unknown_order_and_bad_ids_are_problems_not_errors(api: httpx.AsyncClient) -> None:
    missing = await api.get(f"/v1/orders/{uuid.uuid4()}", headers=as_admin())
    assert (missing.status_code, missing.json()["code"]) == (404, "ORDER_NOT_FOUND")
    garbled = await api.get("/v1/orders/not-a-uuid", headers=as_admin())
    assert garbled.status_code in (400, 422)
    assert garbled.headers["content-type"].startswith("application/problem+json")


async def test_one_request_id_follows_an_order_through_every_service(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    request_id = f"e2e{uuid.uuid4().hex}"
    customer = new_customer()
    response = await api.post(
        "/v1/orders",
        json={"customer_id": customer, "items": [{"sku": "E2E-TEE", "quantity": 1}]},
        headers={"x-request-id": request_id, **as_customer(customer)},
    )
    assert response.status_code == 201, response.text
    assert response.headers["x-request-id"] == request_id
    order_id = response.json()["order_id"]

    def logged_by(service: str) -> bool:
        lines = (pipeline.log_dir / f"{service}.log").read_text().splitlines()
        return any(request_id in line and order_id in line for line in lines)

    async def services_that_logged_it() -> set[str]:
        return {name for name in pipeline.services if logged_by(name)}

    every = set(pipeline.services)
    await eventually(services_that_logged_it, lambda seen: seen == every, what="a log line in every service")
    published = await stream_headers(pipeline.nats_url, ORDERS_STREAM, ORDER_CREATED_SUBJECT)
    event = next(h for h in published if h.get("ce-subject") == order_id)
    assert event["ce-requestid"] == request_id
    assert event["traceparent"]
