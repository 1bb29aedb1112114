"""No oversell: many concurrent reservations of the last units through the real gRPC server."""

import asyncio
import uuid
from typing import Any

import grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_contracts.inventory.v1 import inventory_pb2
from orderflow_kit.grpc_client import error_detail
from tests.integration.inventory.helpers import add_product, available
from tests.support.databases import scalar

CALLS = 200
STOCK = 50


async def test_200_concurrent_reserves_of_one_unit_for_a_stock_of_50_sell_exactly_50(
    inventory: Any, engine: AsyncEngine
) -> None:
    sku = await add_product(engine, stock=STOCK)
    lowest_seen = STOCK
    calls_done = asyncio.Event()

    async def watch_stock() -> None:
        nonlocal lowest_seen
        while not calls_done.is_set():
            lowest_seen = min(lowest_seen, await available(engine, sku))

    async def reserve_one() -> str:
        request = inventory_pb2.ReserveStockRequest(
            order_id=str(uuid.uuid4()), items=[inventory_pb2.StockLine(sku=sku, quantity=1)]
        )
        try:
            await inventory.ReserveStock(request, timeout=30)
        except grpc.aio.AioRpcError as error:
            return f"{error.code().name} {error_detail(error).code}"
        return "OK"

    watcher = asyncio.create_task(watch_stock())
    outcomes = await asyncio.gather(*(reserve_one() for _ in range(CALLS)))
    calls_done.set()
    await watcher

    assert outcomes.count("OK") == STOCK
    assert outcomes.count("FAILED_PRECONDITION OUT_OF_STOCK") == CALLS - STOCK
    assert await available(engine, sku) == 0
    assert lowest_seen >= 0
    reserved = await scalar(engine, "SELECT sum(quantity) FROM reservation_lines WHERE sku = :sku", sku=sku)
    assert reserved == STOCK
