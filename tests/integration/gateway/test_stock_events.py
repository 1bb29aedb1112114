"""GET /v1/products/events when inventory's stream ends under it: the gateway watches again and
the client's stream goes on, the new call's current levels one more event; if inventory stays
away, the stream ends (the client reconnects by itself)."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings
from orderflow_contracts.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from tests.integration.gateway.conftest import over_http
from tests.support.grpc_servers import serving_servicer
from tests.support.sse import event_stream


class EndingInventory(inventory_pb2_grpc.InventoryServiceServicer):  # type: ignore[misc]
    """Each WatchStock call answers the level it is numbered with; the first `ending` calls then end
    (a replica stopping), the next ones stay open."""

    def __init__(self, ending: int) -> None:
        self.ending = ending
        self.calls = 0

    async def WatchStock(self, request: Any, context: Any) -> AsyncIterator[inventory_pb2.WatchStockResponse]:
        self.calls += 1
        number = self.calls
        yield inventory_pb2.WatchStockResponse(levels=[inventory_pb2.StockLevel(sku="SKU-1", available=number)])
        if number > self.ending:
            await asyncio.Event().wait()  # open until the client goes


@pytest.mark.parametrize("ending", [1, 3])
async def test_the_stream_goes_on_when_inventory_ends_its_watch(settings: GatewaySettings, ending: int) -> None:
    inventory = EndingInventory(ending)
    async with serving_servicer(inventory, inventory_pb2_grpc.add_InventoryServiceServicer_to_server) as server:
        app = create_app(settings.model_copy(update={"inventory_addr": server.address}))
        async with (
            over_http(app) as url,
            httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client,
            event_stream(client, "/v1/products/events", headers={}) as stream,
        ):
            levels = [(await stream.next_event()).json()["levels"][0]["available"] for _ in range(ending + 1)]

    assert levels == list(range(1, ending + 2))


async def test_the_stream_ends_when_inventory_stays_away(settings: GatewaySettings) -> None:
    inventory = EndingInventory(ending=1)
    server_context = serving_servicer(inventory, inventory_pb2_grpc.add_InventoryServiceServicer_to_server)
    server = await server_context.__aenter__()
    app = create_app(settings.model_copy(update={"inventory_addr": server.address}))
    async with over_http(app) as url, httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client:
        inventory.ending = 0
        async with event_stream(client, "/v1/products/events", headers={}) as stream:
            first = await stream.next_event()
            await server_context.__aexit__(None, None, None)  # gone for good, mid-stream: ends the first call
            with pytest.raises(AssertionError, match="the stream ended"):
                await stream.next_event()
    assert first.json()["levels"] == [{"sku": "SKU-1", "available": 1}]
