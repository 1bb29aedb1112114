"""The request id and the traceparent: taken from the caller when well-formed, else new; returned
to the caller and handed to the services on every gRPC call."""

import re

import httpx
import pytest

from tests.integration.gateway.fakes import Fakes

TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01")


async def test_the_callers_request_id_is_returned_and_reaches_the_service(
    gateway: httpx.AsyncClient, fakes: Fakes
) -> None:
    response = await gateway.get("/v1/products", headers={"X-Request-Id": "client-req-42"})

    assert response.headers["x-request-id"] == "client-req-42"
    assert fakes.inventory.behaviour.calls[-1]["x-request-id"] == "client-req-42"


async def test_without_a_request_id_the_gateway_makes_one_and_passes_it_on(
    gateway: httpx.AsyncClient, fakes: Fakes
) -> None:
    first = await gateway.get("/v1/products")
    second = await gateway.get("/v1/products")

    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert [call["x-request-id"] for call in fakes.inventory.behaviour.calls] == [
        first.headers["x-request-id"],
        second.headers["x-request-id"],
    ]


@pytest.mark.parametrize("insane", ["has spaces", "x" * 129, "semi;colon", "new\u00e9line"])
async def test_an_insane_request_id_is_replaced(gateway: httpx.AsyncClient, fakes: Fakes, insane: str) -> None:
    response = await gateway.get("/v1/products", headers=[(b"X-Request-Id", insane.encode())])

    assert response.headers["x-request-id"] != insane
    assert response.headers["x-request-id"]
    assert fakes.inventory.behaviour.calls[-1]["x-request-id"] == response.headers["x-request-id"]


async def test_error_responses_carry_the_request_id_too(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v1/nothing-here", headers={"X-Request-Id": "req-404"})

    assert response.headers["x-request-id"] == "req-404"
    assert response.json()["request_id"] == "req-404"


async def test_the_callers_traceparent_reaches_the_service(gateway: httpx.AsyncClient, fakes: Fakes) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    await gateway.get("/v1/products", headers={"traceparent": traceparent})

    assert fakes.inventory.behaviour.calls[-1]["traceparent"] == traceparent


@pytest.mark.parametrize("traceparent", [None, "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"])
async def test_without_a_valid_traceparent_the_service_gets_a_new_one(
    gateway: httpx.AsyncClient, fakes: Fakes, traceparent: str | None
) -> None:
    headers = {"traceparent": traceparent} if traceparent else {}

    await gateway.get("/v1/products", headers=headers)

    assert TRACEPARENT.fullmatch(fakes.inventory.behaviour.calls[-1]["traceparent"])
