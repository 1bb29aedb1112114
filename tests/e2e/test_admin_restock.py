"""POST /v1/admin/restock through the gateway to the real inventory service and its database: an
admin restocks many SKUs, new and known, in one call and the catalog shows the stock; a customer
may not; a refused restock, whichever line is wrong, changes nothing."""

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.schemas import MAX_RESTOCK_REQUEST_LINES
from orderflow_contracts.identifiers import MAX_PRICE_CENTS
from tests.support.pipeline import Pipeline
from tests.support.tokens import as_admin, as_customer

pytestmark = pytest.mark.e2e

KNOWN = "E2E-MUG"
KNOWN_NAME, KNOWN_PRICE = "Enamel mug", 1250


@pytest.fixture
async def api(pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pipeline.gateway_url, timeout=30, trust_env=False) as client:
        yield client


def new_skus(count: int) -> list[str]:
    run = uuid.uuid4().hex[:8].upper()
    return [f"E2E-NEW-{run}-{number}" for number in range(count)]


async def catalog(api: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await api.get("/v1/products")
    assert response.status_code == 200, response.text
    return {product["sku"]: product for product in response.json()["products"]}


async def restock(api: httpx.AsyncClient, lines: list[dict[str, Any]], headers: dict[str, str]) -> httpx.Response:
    return await api.post("/v1/admin/restock", json={"lines": lines}, headers=headers)


async def test_an_admin_restocks_many_skus_in_one_call_and_the_catalog_shows_the_new_stock(
    api: httpx.AsyncClient,
) -> None:
    new = new_skus(12)
    before = await catalog(api)
    lines = [
        {"sku": sku, "quantity": 10 + number, "name": f"Restocked product {number}", "price_cents": 100 * number}
        for number, sku in enumerate(new)
    ]
    # A known SKU on two lines, one naming it as the catalog does: the units add up.
    lines += [
        {"sku": KNOWN, "quantity": 5},
        {"sku": KNOWN, "quantity": 7, "name": KNOWN_NAME, "price_cents": KNOWN_PRICE},
    ]

    response = await restock(api, lines, as_admin())

    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["lines"] == len(lines)
    products = {product["sku"]: product for product in summary["products"]}
    assert [product["sku"] for product in summary["products"]] == sorted([*new, KNOWN])
    assert products[KNOWN]["units_added"] == 12
    assert products[KNOWN]["added_to_catalog"] is False
    assert all(products[sku]["added_to_catalog"] for sku in new)
    assert products[KNOWN]["available"] == before[KNOWN]["available"] + 12
    after = await catalog(api)
    assert after[KNOWN]["available"] == products[KNOWN]["available"]
    for number, sku in enumerate(new):
        assert after[sku] == {
            "sku": sku,
            "name": f"Restocked product {number}",
            "price_cents": 100 * number,
            "currency": "EUR",
            "available": 10 + number,
        }
        assert products[sku]["available"] == 10 + number


async def test_a_customer_token_may_not_restock(api: httpx.AsyncClient) -> None:
    [sku] = new_skus(1)

    response = await restock(api, [{"sku": sku, "quantity": 1, "name": "Nope", "price_cents": 1}], as_customer("c-1"))

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "INSUFFICIENT_SCOPE"
    assert sku not in await catalog(api)


# One good line for a new SKU, then the wrong one: the good one must not be applied either.
WRONG_LINES = {
    "schema: quantity 0 (gateway)": (422, "VALIDATION_FAILED", {"sku": "E2E-OK", "quantity": 0}),
    "schema: name without price (gateway)": (422, "VALIDATION_FAILED", {"sku": "E2E-OK", "quantity": 1, "name": "x"}),
    "unknown SKU without name and price": (404, "UNKNOWN_SKU", {"sku": "E2E-NOWHERE", "quantity": 1}),
    "another name for a known SKU": (
        409,
        "PRODUCT_MISMATCH",
        {"sku": KNOWN, "quantity": 1, "name": "Not the mug", "price_cents": KNOWN_PRICE},
    ),
    "lines that contradict each other": (409, "PRODUCT_MISMATCH", None),
}


@pytest.mark.parametrize(("status", "code", "wrong"), WRONG_LINES.values(), ids=WRONG_LINES.keys())
async def test_a_restock_with_a_wrong_line_is_a_problem_and_restocks_nothing(
    api: httpx.AsyncClient, status: int, code: str, wrong: dict[str, Any] | None
) -> None:
    [sku] = new_skus(1)
    good = {"sku": sku, "quantity": 3, "name": "Good line", "price_cents": 300}
    # The same new SKU again, with another price: only inventory sees that the lines disagree.
    bad = wrong or {"sku": sku, "quantity": 1, "name": "Good line", "price_cents": 301}
    before = await catalog(api)

    response = await restock(api, [good, {"sku": KNOWN, "quantity": 1}, bad], as_admin())

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == code
    if code in {"UNKNOWN_SKU", "PRODUCT_MISMATCH"}:
        assert problem["skus"] == [bad["sku"]]
        assert "nothing was restocked" in problem["detail"]
    after = await catalog(api)
    assert sku not in after
    assert after[KNOWN] == before[KNOWN]


async def test_the_largest_restock_the_schema_allows_is_served_and_one_line_more_is_a_422(
    api: httpx.AsyncClient,
) -> None:
    """Over the 64 KiB of other bodies, within the restock's own limit: the document's maxItems is the
    rule, never the size of the body (each name's 200 characters \\u-escaped, 12 bytes apiece)."""
    [sku] = new_skus(1)
    line = {"sku": sku, "quantity": 1, "name": "\U0001f600" * 200, "price_cents": MAX_PRICE_CENTS}
    headers = {**as_admin(), "content-type": "application/json"}

    too_many = json.dumps({"lines": [line] * (MAX_RESTOCK_REQUEST_LINES + 1)}).encode()
    refused = await api.post("/v1/admin/restock", content=too_many, headers=headers)
    largest = json.dumps({"lines": [line] * MAX_RESTOCK_REQUEST_LINES}).encode()
    served = await api.post("/v1/admin/restock", content=largest, headers=headers)

    assert len(largest) > 2_000_000
    assert (refused.status_code, refused.json()["code"]) == (422, "VALIDATION_FAILED")
    assert served.status_code == 200, served.text
    assert served.json()["products"] == [
        {
            "sku": sku,
            "units_added": MAX_RESTOCK_REQUEST_LINES,
            "available": MAX_RESTOCK_REQUEST_LINES,
            "added_to_catalog": True,
        }
    ]
