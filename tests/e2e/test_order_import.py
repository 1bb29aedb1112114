"""POST /v1/admin/orders:import through the real gateway and orders' PlaceOrders: NDJSON in, NDJSON
out, each line answered in order (bad lines with their problem, not a 500), an answer streamed
back before the next line is sent, a re-run placing nothing twice, admins only."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import pytest

from tests.e2e.support import available, new_customer
from tests.support.pipeline import Pipeline
from tests.support.tokens import as_admin, as_customer

pytestmark = pytest.mark.e2e

PATH = "/v1/admin/orders:import"
NDJSON = {"Content-Type": "application/x-ndjson"}
WITHIN = 20.0


def line(customer: str, items: dict[str, int], client_request_id: str) -> str:
    body = {
        "customer_id": customer,
        "items": [{"sku": sku, "quantity": quantity} for sku, quantity in items.items()],
        "client_request_id": client_request_id,
    }
    return json.dumps(body)


async def run_import(api: httpx.AsyncClient, lines: list[str]) -> list[dict[str, Any]]:
    body = ("\n".join(lines) + "\n").encode()
    response = await api.post(PATH, content=body, headers={**as_admin(), **NDJSON})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(answer) for answer in response.text.splitlines()]


def outcome(answer: dict[str, Any]) -> str:
    return "order" if "order" in answer else f"{answer['problem']['status']} {answer['problem']['code']}"


async def test_every_line_is_answered_in_order_bad_lines_with_their_problem(api: httpx.AsyncClient) -> None:
    customer, run = new_customer(), uuid.uuid4().hex[:8]
    lines = [
        line(customer, {"E2E-MUG": 1}, f"{run}-1"),
        "{not json",
        line(customer, {"E2E-NO-SUCH": 1}, f"{run}-3"),
        "",  # blank: skipped, still counted
        json.dumps({"customer_id": customer, "items": [], "client_request_id": f"{run}-5"}),
        line(customer, {"E2E-LIMITED": 1000}, f"{run}-6"),  # more than the limited edition ever had
        json.dumps({"customer_id": customer, "items": [{"sku": "E2E-MUG", "quantity": 1}]}),  # no id
        '{"customer_id": "' + "x" * 70_000 + '"}',  # longer than the gateway takes in one body
        line(customer, {"E2E-TEE": 2, "E2E-MUG": 1}, f"{run}-9"),
        "[" * 5000 + "]" * 5000,  # nested deeper than any parser here goes
    ]

    answers = await run_import(api, lines)

    assert [answer["line"] for answer in answers] == [1, 2, 3, 5, 6, 7, 8, 9, 10]
    assert [outcome(answer) for answer in answers] == [
        "order",
        "400 MALFORMED_JSON",
        "404 UNKNOWN_SKU",
        "422 VALIDATION_FAILED",
        "409 OUT_OF_STOCK",
        "422 VALIDATION_FAILED",
        "413 BODY_TOO_LARGE",
        "order",
        "400 MALFORMED_JSON",
    ]
    assert [answer["client_request_id"] for answer in answers] == [
        f"{run}-1",
        None,
        f"{run}-3",
        f"{run}-5",
        f"{run}-6",
        None,
        None,
        f"{run}-9",
        None,
    ]
    assert answers[2]["problem"]["skus"] == ["E2E-NO-SUCH"]
    assert answers[3]["problem"]["errors"][0]["location"] == ["items"]
    assert answers[0]["order"]["customer_id"] == customer
    assert {item["sku"]: item["quantity"] for item in answers[-2]["order"]["items"]} == {"E2E-MUG": 1, "E2E-TEE": 2}
    assert all(answer["problem"]["instance"] == PATH for answer in answers if "problem" in answer)


async def test_running_an_import_again_answers_the_same_orders_and_places_none_twice(api: httpx.AsyncClient) -> None:
    customer, run = new_customer(), uuid.uuid4().hex[:8]
    lines = [line(customer, {"E2E-TEE": 1}, f"{run}-{number}") for number in range(20)]
    tees_before = await available(api, "E2E-TEE")

    first = await run_import(api, lines)
    again = await run_import(api, lines)

    assert [outcome(answer) for answer in first] == ["order"] * 20
    assert [answer["order"]["order_id"] for answer in again] == [answer["order"]["order_id"] for answer in first]
    listed = await api.get("/v1/orders", params={"customer_id": customer, "page_size": 100}, headers=as_admin())
    assert len(listed.json()["orders"]) == 20
    # Other tests order tees meanwhile: this import took exactly its 20 at most once each.
    assert await available(api, "E2E-TEE") <= tees_before - 20


async def test_each_answer_streams_back_before_the_next_line_is_sent(pipeline: Pipeline) -> None:
    """aiohttp sends the body while it reads the answer (httpx would send all of it first)."""
    customer, run = new_customer(), uuid.uuid4().hex[:8]
    to_send: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def body() -> AsyncIterator[bytes]:
        while (chunk := await to_send.get()) is not None:
            yield chunk

    answers = []
    async with asyncio.timeout(WITHIN), aiohttp.ClientSession() as session:
        await to_send.put((line(customer, {"E2E-MUG": 1}, f"{run}-0") + "\n").encode())
        async with session.post(pipeline.gateway_url + PATH, data=body(), headers={**as_admin(), **NDJSON}) as response:
            assert response.status == 200
            for number in range(1, 4):
                answers.append(json.loads(await response.content.readline()))
                # Only now does the next line exist.
                await to_send.put((line(customer, {"E2E-MUG": 1}, f"{run}-{number}") + "\n").encode())
            await to_send.put(None)
            answers += [json.loads(rest) async for rest in response.content if rest.strip()]

    assert [(answer["line"], outcome(answer)) for answer in answers] == [(n, "order") for n in range(1, 5)]


async def test_only_admins_import_and_only_ndjson(api: httpx.AsyncClient) -> None:
    body = line(new_customer(), {"E2E-MUG": 1}, "never-placed") + "\n"

    as_a_customer = await api.post(PATH, content=body, headers={**as_customer(new_customer()), **NDJSON})
    as_json = await api.post(PATH, content=body, headers={**as_admin(), "Content-Type": "application/json"})

    assert (as_a_customer.status_code, as_a_customer.json()["code"]) == (403, "INSUFFICIENT_SCOPE")
    assert (as_json.status_code, as_json.json()["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
