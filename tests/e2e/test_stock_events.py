"""Live stock over Server-Sent Events (GET /v1/products/events), through the real gateway and
inventory's WatchStock: the current levels, then an order's reservation as it happens, for anyone
(no token); refusals before the stream starts are problem+json."""

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.support import available, new_customer, place
from tests.support.pipeline import Pipeline
from tests.support.polling import eventually
from tests.support.sse import Message, event_stream

pytestmark = pytest.mark.e2e

SKU = "E2E-TEE"


def levels(message: Message) -> dict[str, int]:
    assert message.event == "stock", message
    return {level["sku"]: level["available"] for level in message.json()["levels"]}


async def test_a_watcher_sees_the_current_level_then_an_order_take_its_stock(api: httpx.AsyncClient) -> None:
    async with event_stream(api, f"/v1/products/events?sku={SKU}", headers={}) as stream:
        opening = await stream.next_message()
        assert opening.comments == ["orderflow live stock"]
        assert opening.retry is not None
        current = levels(await stream.next_event())
        assert list(current) == [SKU]

        response = await place(api, new_customer(), (SKU, 3))
        assert response.status_code == 201, response.text

        # Other tests may order the same SKU meanwhile: the level reached is at most 3 lower.
        seen = await stream.events_until(lambda message: levels(message)[SKU] <= current[SKU] - 3)
    assert all(list(levels(message)) == [SKU] for message in seen)
    assert await available(api, SKU) <= current[SKU] - 3


async def test_without_skus_the_first_event_holds_every_product(api: httpx.AsyncClient) -> None:
    catalog = await api.get("/v1/products")
    async with event_stream(api, "/v1/products/events", headers={}) as stream:
        first = levels(await stream.next_event())
    assert set(first) >= {product["sku"] for product in catalog.json()["products"]}


async def open_watches(pipeline: Pipeline) -> float:
    """WatchStock streams inventory holds open (its orderflow_inventory_stock_watchers gauge)."""
    async with httpx.AsyncClient(trust_env=False) as client:
        exposition = (await client.get(pipeline.metrics_urls["inventory"])).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "orderflow_inventory_stock_watchers"
    )


async def test_a_client_that_goes_away_ends_its_watch_in_inventory(api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    before = await open_watches(pipeline)
    async with event_stream(api, f"/v1/products/events?sku={SKU}", headers={}) as stream:
        await stream.next_event()
        assert await open_watches(pipeline) == before + 1

    await eventually(lambda: open_watches(pipeline), lambda now: now == before, what="the watch ended in inventory")


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [("sku=E2E-NO-SUCH-SKU", 404, "UNKNOWN_SKU"), ("sku=not%20a%20sku", 422, "VALIDATION_FAILED")],
)
async def test_a_refused_watch_is_a_problem_before_any_event(
    api: httpx.AsyncClient, query: str, status: int, code: str
) -> None:
    response = await api.get(f"/v1/products/events?{query}")

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
