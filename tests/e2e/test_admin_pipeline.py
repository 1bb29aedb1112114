"""GET /v1/admin/pipeline through the real gateway in front of the real pipeline: the figures
follow an order through the broker, name the pipeline's own consumers, and are for admins only."""

from typing import Any

import httpx
import pytest

from tests.e2e.support import new_customer, place, read
from tests.support.pipeline import Pipeline
from tests.support.polling import eventually
from tests.support.tokens import as_admin, as_customer

pytestmark = pytest.mark.e2e


async def figures(api: httpx.AsyncClient) -> dict[str, Any]:
    return await read(api, "/v1/admin/pipeline", as_admin())


async def test_the_figures_count_an_order_published_and_awarded_and_the_consumers_catch_up(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    before = await figures(api)
    assert response_ok(await place(api, new_customer(), ("E2E-MUG", 1)))

    def settled(now: dict[str, Any]) -> bool:
        consumers = now["consumers"]
        assert isinstance(consumers, list)
        return (
            now["orders_published"] > before["orders_published"]
            and now["points_awarded"] > before["points_awarded"]
            and all(consumer["exists"] and consumer["pending"] == 0 for consumer in consumers)
        )

    after = await eventually(lambda: figures(api), settled, what="the order published, awarded, consumed")
    assert [consumer["name"] for consumer in after["consumers"]] == [
        pipeline.consumer,
        pipeline.inventory_consumer,
    ]
    assert isinstance(after["dead_letters"], int)


def response_ok(response: httpx.Response) -> bool:
    return response.status_code == 201


async def test_the_figures_are_for_admins_only(api: httpx.AsyncClient) -> None:
    refused = await api.get("/v1/admin/pipeline", headers=as_customer(new_customer()))
    assert refused.status_code == 403
    assert (await api.get("/v1/admin/pipeline")).status_code == 401
