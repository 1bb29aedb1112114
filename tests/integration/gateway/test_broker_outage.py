"""The gateway without NATS: it starts, is ready and serves orders; only what reads the broker (the
live event feeds, the dead-letter endpoints) is refused, with a 503 problem, and works once NATS
is reachable again, without a restart. Over real HTTP (uvicorn), through a port that refuses connections until the test
ends the outage."""

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings
from orderflow_devstack.infra import Infrastructure
from tests.integration.gateway.conftest import over_http
from tests.support.jetstream import ensure_orderflow_streams
from tests.support.outages import Outage
from tests.support.polling import eventually
from tests.support.tokens import as_admin, as_customer

CUSTOMER = "customer-broker-outage"


@pytest.fixture
async def outage(infra: Infrastructure) -> AsyncIterator[tuple[Outage, str]]:
    await ensure_orderflow_streams(infra.nats_url)
    outage, url = Outage.in_front_of(infra.nats_url, default_port=4222)
    yield outage, url
    await outage.close()


async def feed_status(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> tuple[int, str]:
    """The status of opening a feed (closed again at once) and, for a problem, its code."""
    async with client.stream("GET", path, headers=headers) as response:
        if response.status_code == 200:
            return 200, response.headers["content-type"]
        await response.aread()
        return response.status_code, response.json()["code"]


async def test_without_nats_orders_are_served_and_what_reads_nats_is_a_503_until_it_is_back(
    settings: GatewaySettings, outage: tuple[Outage, str]
) -> None:
    unreachable, url = outage
    app = create_app(settings.model_copy(update={"nats_url": url, "broker_timeout_seconds": 0.2}))
    async with over_http(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        placed = await client.post(
            "/v1/orders", json={"items": [{"sku": "SKU-1", "quantity": 1}]}, headers=as_customer(CUSTOMER)
        )
        ready = await client.get("/readyz")
        order_feed = f"/v1/orders/{placed.json()['order_id']}/events"
        refused = await client.get(order_feed, headers=as_customer(CUSTOMER))
        refused_all = await client.get("/v1/events", headers=as_admin())
        refused_dead_letters = await client.get("/v1/admin/dead-letters", headers=as_admin())

        assert placed.status_code == 201, placed.text
        assert ready.status_code == 200, ready.text
        for response in (refused, refused_all, refused_dead_letters):
            assert response.status_code == 503
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "DEPENDENCY_UNAVAILABLE"
            assert response.json()["detail"] == "The event broker is unavailable; retry later."

        await unreachable.end()
        opened = await eventually(
            lambda: feed_status(client, order_feed, as_customer(CUSTOMER)),
            lambda status: status[0] == 200,
            what="the feed once NATS is back",
        )
        assert opened[1].startswith("text/event-stream")
        assert await feed_status(client, "/v1/events", as_admin()) == (200, opened[1])
        assert (await client.get("/v1/admin/dead-letters", headers=as_admin())).status_code == 200
