"""Idempotency-Key through the real gateway, orders and inventory, each a process on real servers:
one key places one order, however many copies race, even when the gateway lost its record, and a
retry never gets an answer that the order it placed contradicts."""

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from gateway.idempotency import KEY_HEADER, REPLAYED_HEADER, client_request_id, record_key
from tests.e2e.support import available, new_customer
from tests.integration.orders.helpers import stalled_order_writes
from tests.support.databases import database_engine
from tests.support.pipeline import Pipeline
from tests.support.polling import eventually
from tests.support.tokens import as_admin, as_customer

pytestmark = pytest.mark.e2e

SKU = "E2E-MUG"


async def place(api: httpx.AsyncClient, customer_id: str, key: str, quantity: int = 2) -> httpx.Response:
    body = {"items": [{"sku": SKU, "quantity": quantity}]}
    return await api.post("/v1/orders", json=body, headers={KEY_HEADER: key, **as_customer(customer_id)})


async def listed(api: httpx.AsyncClient, customer_id: str) -> list[dict[str, Any]]:
    response = await api.get("/v1/orders", params={"customer_id": customer_id}, headers=as_customer(customer_id))
    assert response.status_code == 200, response.text
    orders: list[dict[str, Any]] = response.json()["orders"]
    return orders


async def stored_orders(pipeline: Pipeline, customer_id: str) -> list[tuple[str, str | None]]:
    """(order id, client_request_id) of each of the customer's rows in orders' own database."""
    async with (
        database_engine(pipeline.infra.postgres_url, pipeline.databases["orders"]) as engine,
        engine.connect() as connection,
    ):
        rows = await connection.execute(
            text("SELECT order_id, client_request_id FROM orders WHERE customer_id = :customer"),
            {"customer": customer_id},
        )
        return [(str(order_id), request_id) for order_id, request_id in rows]


async def forget(pipeline: Pipeline, customer_id: str, key: str) -> None:
    """What a gateway that died between orders' answer and its Redis write leaves: no record."""
    redis = Redis.from_url(pipeline.infra.redis_url)
    try:
        assert await redis.delete(record_key(customer_id, key)) == 1
    finally:
        await redis.aclose()


async def test_the_same_key_fired_20_times_at_once_places_exactly_one_order(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    customer, key = new_customer(), str(uuid.uuid4())
    stock_before = await available(api, SKU)

    responses = await asyncio.gather(*(place(api, customer, key) for _ in range(20)))
    repeat = await place(api, customer, key)

    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {201, 409}, [response.text for response in responses]
    assert {response.json()["code"] for response in responses if response.status_code == 409} <= {
        "IDEMPOTENCY_KEY_IN_FLIGHT"
    }
    [order_id] = {response.json()["order_id"] for response in responses if response.status_code == 201}
    assert repeat.status_code == 201, repeat.text
    assert repeat.headers[REPLAYED_HEADER] == "true"
    assert repeat.json()["order_id"] == order_id
    assert [order["order_id"] for order in await listed(api, customer)] == [order_id]
    assert await stored_orders(pipeline, customer) == [(order_id, client_request_id(key))]
    assert await available(api, SKU) == stock_before - 2


async def test_a_retry_after_the_gateway_lost_its_record_still_answers_the_one_order(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    """orders dedupes on the client_request_id derived from the key: the retry reaches it and gets
    the order placed before, and the same key with other items is still refused."""
    customer, key = new_customer(), str(uuid.uuid4())
    stock_before = await available(api, SKU)
    first = await place(api, customer, key)
    await forget(pipeline, customer, key)

    retry = await place(api, customer, key)
    await forget(pipeline, customer, key)
    other = await place(api, customer, key, quantity=3)

    assert first.status_code == 201, first.text
    assert retry.status_code == 201, retry.text
    assert REPLAYED_HEADER not in retry.headers  # answered by orders, not from the gateway's record
    assert retry.json() == first.json()
    assert retry.headers["location"] == first.headers["location"]
    assert other.status_code == 422, other.text
    assert other.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert [order["order_id"] for order in await listed(api, customer)] == [first.json()["order_id"]]
    assert await available(api, SKU) == stock_before - 2


async def test_a_retry_while_the_first_placement_is_stalled_never_gets_an_answer_its_order_contradicts(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    """Issue 9.1. The only unit is reserved by the first request, whose order cannot be written (a
    lock on orders' outbox) before the gateway's deadline: 504, and the placement goes on. The
    retry must not reserve again and be told OUT_OF_STOCK, an answer kept for 24 h that the order
    contradicts once it commits: it is told the request is in flight, not kept, and once the order
    is written every retry answers it."""
    customer, key = new_customer(), str(uuid.uuid4())
    sku = f"E2E-ONE-{uuid.uuid4().hex[:8].upper()}"
    line = {"sku": sku, "quantity": 1, "name": "One of a kind", "price_cents": 100}
    restocked = await api.post("/v1/admin/restock", json={"lines": [line]}, headers=as_admin())
    assert restocked.status_code == 200, restocked.text

    async def order() -> httpx.Response:
        body = {"items": [{"sku": sku, "quantity": 1}]}
        return await api.post("/v1/orders", json=body, headers={KEY_HEADER: key, **as_customer(customer)})

    async with (
        database_engine(pipeline.infra.postgres_url, pipeline.databases["orders"]) as orders_engine,
        stalled_order_writes(orders_engine),
    ):
        first = await order()
        retry = await order()
    placed = await eventually(order, lambda response: "retry-after" not in response.headers, what="the order")
    replayed = await order()

    assert first.status_code == 504, first.text
    assert retry.status_code == 409, retry.text
    assert retry.json()["code"] == "IDEMPOTENCY_KEY_IN_FLIGHT"
    assert retry.headers["retry-after"] == "1"
    assert REPLAYED_HEADER not in retry.headers
    assert placed.status_code == 201, placed.text
    assert replayed.headers[REPLAYED_HEADER] == "true"
    assert replayed.json()["order_id"] == placed.json()["order_id"]
    assert [order_id for order_id, _ in await stored_orders(pipeline, customer)] == [placed.json()["order_id"]]
    assert await available(api, sku) == 0
