"""Every client error comes back with the right gRPC status AND the stable ErrorInfo reason."""

import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_contracts.identifiers import MAX_ORDER_LINES, MAX_SKU_QUANTITY
from orderflow_contracts.inventory.v1 import inventory_pb2
from orderflow_kit.grpc_client import ErrorDetail
from tests.integration.inventory.helpers import add_product, available
from tests.support.rpc_errors import rpc_error


def line(sku: str, quantity: int = 1) -> inventory_pb2.StockLine:
    return inventory_pb2.StockLine(sku=sku, quantity=quantity)


def reserve(items: list[inventory_pb2.StockLine], order_id: str = "") -> inventory_pb2.ReserveStockRequest:
    return inventory_pb2.ReserveStockRequest(order_id=order_id or str(uuid.uuid4()), items=items)


MALFORMED_RESERVES: dict[str, tuple[str, Callable[[str], inventory_pb2.ReserveStockRequest]]] = {
    "order id not a uuid": ("order_id", lambda sku: reserve([line(sku)], order_id="order-1")),
    "order id upper case": ("order_id", lambda sku: reserve([line(sku)], order_id=str(uuid.uuid4()).upper())),
    "no items": ("items", lambda sku: reserve([])),
    "too many lines": ("items", lambda sku: reserve([line(f"SKU-{n}") for n in range(MAX_ORDER_LINES + 1)])),
    "zero quantity": ("items[0].quantity", lambda sku: reserve([line(sku, 0)])),
    "negative quantity": ("items[0].quantity", lambda sku: reserve([line(sku, -1)])),
    "quantity too large": ("items[0].quantity", lambda sku: reserve([line(sku, MAX_SKU_QUANTITY + 1)])),
    "malformed sku": ("items[1].sku", lambda sku: reserve([line(sku), line("mug 1")])),
    "sku listed twice": ("items[1].sku", lambda sku: reserve([line(sku), line(sku)])),
}


@pytest.mark.parametrize(("field", "make_request"), MALFORMED_RESERVES.values(), ids=MALFORMED_RESERVES.keys())
async def test_a_malformed_reserve_is_invalid_argument_naming_the_field(
    inventory: Any, engine: AsyncEngine, field: str, make_request: Callable[[str], inventory_pb2.ReserveStockRequest]
) -> None:
    sku = await add_product(engine, stock=5)

    code, detail, message = await rpc_error(inventory.ReserveStock(make_request(sku)))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert detail == ErrorDetail("VALIDATION_FAILED", {"field": field})
    assert message.startswith(field)
    assert await available(engine, sku) == 5


async def test_reserving_unknown_skus_is_not_found_naming_them_all(inventory: Any, engine: AsyncEngine) -> None:
    sku = await add_product(engine, stock=5)

    code, detail, message = await rpc_error(
        inventory.ReserveStock(reserve([line("NOPE-2"), line(sku), line("NOPE-1")]))
    )

    assert code == grpc.StatusCode.NOT_FOUND
    assert detail == ErrorDetail("UNKNOWN_SKU", {"skus": "NOPE-1,NOPE-2"})
    assert "NOPE-1, NOPE-2" in message
    assert await available(engine, sku) == 5


async def test_reserving_more_than_available_is_out_of_stock_naming_every_short_sku(
    inventory: Any, engine: AsyncEngine
) -> None:
    plenty, short, shorter = await add_product(engine, 10), await add_product(engine, 2), await add_product(engine, 0)

    code, detail, message = await rpc_error(
        inventory.ReserveStock(reserve([line(plenty, 5), line(short, 3), line(shorter, 1)]))
    )

    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert detail == ErrorDetail("OUT_OF_STOCK", {"skus": ",".join(sorted([short, shorter]))})
    assert f"{short} (requested 3, available 2)" in message
    assert f"{shorter} (requested 1, available 0)" in message
    assert [await available(engine, sku) for sku in (plenty, short, shorter)] == [10, 2, 0]


async def test_reserving_an_order_again_with_other_lines_is_already_exists(inventory: Any, engine: AsyncEngine) -> None:
    sku = await add_product(engine, stock=5)
    order_id = str(uuid.uuid4())
    await inventory.ReserveStock(reserve([line(sku, 1)], order_id))

    code, detail, _ = await rpc_error(inventory.ReserveStock(reserve([line(sku, 2)], order_id)))

    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert detail == ErrorDetail("RESERVATION_CONFLICT", {"order_id": order_id})
    assert await available(engine, sku) == 4


async def test_reserving_a_released_order_is_failed_precondition(inventory: Any, engine: AsyncEngine) -> None:
    sku = await add_product(engine, stock=5)
    order_id = str(uuid.uuid4())
    await inventory.ReserveStock(reserve([line(sku, 1)], order_id))
    await inventory.ReleaseStock(inventory_pb2.ReleaseStockRequest(order_id=order_id))

    code, detail, _ = await rpc_error(inventory.ReserveStock(reserve([line(sku, 1)], order_id)))

    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert detail == ErrorDetail("RESERVATION_RELEASED", {"order_id": order_id})
    assert await available(engine, sku) == 5


async def test_releasing_a_malformed_order_id_is_invalid_argument(inventory: Any) -> None:
    code, detail, _ = await rpc_error(inventory.ReleaseStock(inventory_pb2.ReleaseStockRequest(order_id="nope")))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert detail == ErrorDetail("VALIDATION_FAILED", {"field": "order_id"})


async def test_getting_a_malformed_sku_is_invalid_argument(inventory: Any) -> None:
    code, detail, _ = await rpc_error(inventory.GetProduct(inventory_pb2.GetProductRequest(sku="mug 1")))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert detail == ErrorDetail("VALIDATION_FAILED", {"field": "sku"})


async def test_getting_an_unknown_sku_is_not_found(inventory: Any) -> None:
    code, detail, _ = await rpc_error(inventory.GetProduct(inventory_pb2.GetProductRequest(sku="NOPE-1")))

    assert code == grpc.StatusCode.NOT_FOUND
    assert detail == ErrorDetail("UNKNOWN_SKU", {"skus": "NOPE-1"})
