"""Small helpers the end-to-end tests share: the gateway's answers, and publishing to and reading JetStream."""

import uuid
from typing import Any

import httpx
import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from orderflow_contracts.streams import ORDER_CREATED_SUBJECT
from tests.support.tokens import as_customer


def new_customer() -> str:
    return f"e2e-{uuid.uuid4().hex[:12]}"


async def read(api: httpx.AsyncClient, path: str, headers: dict[str, str]) -> dict[str, Any]:
    """The JSON body of a GET that must answer 200."""
    response = await api.get(path, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def loyalty(api: httpx.AsyncClient, customer_id: str) -> dict[str, Any]:
    return await read(api, f"/v1/customers/{customer_id}/loyalty", as_customer(customer_id))


async def available(api: httpx.AsyncClient, sku: str) -> int:
    response = await api.get("/v1/products")
    assert response.status_code == 200, response.text
    return next(int(p["available"]) for p in response.json()["products"] if p["sku"] == sku)


async def place(api: httpx.AsyncClient, customer_id: str, *items: tuple[str, int]) -> httpx.Response:
    body = {"customer_id": customer_id, "items": [{"sku": sku, "quantity": q} for sku, q in items]}
    return await api.post("/v1/orders", json=body, headers=as_customer(customer_id))


async def publish(nats_url: str, headers: dict[str, str], body: bytes, subject: str = ORDER_CREATED_SUBJECT) -> int:
    """Publish straight to JetStream, as a misbehaving or duplicating producer would; returns the sequence."""
    connection = await nats.connect(nats_url)
    try:
        ack = await connection.jetstream().publish(subject, body, headers=headers)
        return ack.seq
    finally:
        await connection.close()


async def stream_headers(nats_url: str, stream: str, subject: str) -> list[dict[str, str]]:
    """The headers of every message on `subject` in `stream`, read with a throwaway consumer."""
    connection = await nats.connect(nats_url)
    try:
        js = connection.jetstream()
        pending = (await js.stream_info(stream, subjects_filter=subject)).state.subjects or {}
        count = pending.get(subject, 0)
        subscription = await js.pull_subscribe(
            subject,
            stream=stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, inactive_threshold=30),
        )
        headers: list[dict[str, str]] = []
        while len(headers) < count:
            for message in await subscription.fetch(min(256, count - len(headers)), timeout=5):
                headers.append(dict(message.headers or {}))
                await message.ack()
        await subscription.unsubscribe()
        return headers
    finally:
        await connection.close()
