"""The request body limit (gateway.body_limit) over real HTTP: uvicorn serving the gateway app on a
free port. A body over the limit is a 413 problem whether or not it declares its length, it is
refused while it is still arriving, and nothing reaches a service; a body of exactly the limit
is served."""

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.integration.gateway.conftest import over_http
from tests.integration.gateway.fakes import Fakes
from tests.support.tokens import as_customer

LIMIT = 2048
ORDER = {"customer_id": "customer-body-limit", "items": [{"sku": "SKU-1", "quantity": 1}]}
CHUNK = 256


def order_of_size(size: int) -> bytes:
    """A valid order, padded with JSON whitespace to exactly `size` bytes."""
    body = json.dumps(ORDER).encode()
    return body + b" " * (size - len(body))


def chunks(body: bytes) -> list[bytes]:
    return [body[start : start + CHUNK] for start in range(0, len(body), CHUNK)]


async def streamed(body: bytes) -> AsyncIterator[bytes]:
    """A body without Content-Length: httpx sends an iterator chunked."""
    for chunk in chunks(body):
        yield chunk


@pytest.fixture
async def base_url(settings: GatewaySettings) -> AsyncIterator[str]:
    async with over_http(create_app(settings.model_copy(update={"max_request_body_bytes": LIMIT}))) as url:
        yield url


async def post_order(base_url: str, content: bytes | AsyncIterator[bytes]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, trust_env=False) as client:
        headers = {"content-type": "application/json", **as_customer(str(ORDER["customer_id"]))}
        return await client.post("/v1/orders", content=content, headers=headers)


def assert_nothing_ordered(fakes: Fakes) -> None:
    assert fakes.orders.behaviour.calls == []
    assert fakes.orders.orders == []


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_body_over_the_limit_is_a_413_problem_and_nothing_is_ordered(
    base_url: str, fakes: Fakes, declared: bool
) -> None:
    body = order_of_size(LIMIT + 1)
    response = await post_order(base_url, body if declared else streamed(body))

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "BODY_TOO_LARGE"
    assert problem["type"] == "https://orderflow.dev/problems/body-too-large"
    assert problem["detail"] == f"The request body is larger than {LIMIT} bytes."
    assert problem["request_id"] == response.headers["x-request-id"]
    assert_nothing_ordered(fakes)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_body_of_exactly_the_limit_is_served(base_url: str, fakes: Fakes, declared: bool) -> None:
    body = order_of_size(LIMIT)
    response = await post_order(base_url, body if declared else streamed(body))

    assert response.status_code == 201, response.text
    assert len(fakes.orders.orders) == 1


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_the_413_comes_before_the_body_ends(base_url: str, fakes: Fakes, declared: bool) -> None:
    """The client sends the head and part of a body that never ends: the 413 arrives all the same.
    A declared length is refused before any of the body is read; a chunked body as soon as it
    passes the limit."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = f"POST /v1/orders HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    if declared:
        writer.write(f"{head}Content-Length: {10 * LIMIT}\r\n\r\n".encode() + order_of_size(CHUNK))
    else:
        writer.write(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
        for chunk in chunks(order_of_size(LIMIT + CHUNK)):
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    await writer.drain()
    try:
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 413 "), status_line
    assert_nothing_ordered(fakes)
