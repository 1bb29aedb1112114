"""Malformed requests are refused as VALIDATION_FAILED before any database work: the engine here
points at a port where no server listens, so touching it would fail differently."""

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.reservations import StockLine, release_stock, reserve_stock
from orderflow_contracts.identifiers import MAX_ORDER_LINES, MAX_SKU_QUANTITY
from orderflow_kit.db import create_engine
from orderflow_kit.errors import ErrorKind, ServiceError

ORDER_ID = str(uuid.uuid4())
ONE_MUG = [StockLine("MUG-001", 1)]


@pytest.fixture
async def unreachable_engine() -> AsyncIterator[AsyncEngine]:
    engine = create_engine("postgresql://nobody@127.0.0.1:9/postgres", "inventory")
    yield engine
    await engine.dispose()


@pytest.mark.parametrize(
    ("order_id", "items", "field"),
    [
        ("order-1", ONE_MUG, "order_id"),
        (ORDER_ID.upper(), ONE_MUG, "order_id"),
        (uuid.UUID(ORDER_ID).hex, ONE_MUG, "order_id"),
        (ORDER_ID, [], "items"),
        (ORDER_ID, [StockLine(f"SKU-{n}", 1) for n in range(MAX_ORDER_LINES + 1)], "items"),
        (ORDER_ID, [StockLine("MUG-001", 0)], "items[0].quantity"),
        (ORDER_ID, [StockLine("MUG-001", -3)], "items[0].quantity"),
        (ORDER_ID, [StockLine("MUG-001", MAX_SKU_QUANTITY + 1)], "items[0].quantity"),
        (ORDER_ID, [StockLine("MUG-001", 1), StockLine("mug-002", 1)], "items[1].sku"),
        (ORDER_ID, [StockLine("", 1)], "items[0].sku"),
        (ORDER_ID, [StockLine("MUG-001", 1), StockLine("MUG-001", 2)], "items[1].sku"),
    ],
)
async def test_reserve_refuses_a_malformed_request_naming_the_field(
    unreachable_engine: AsyncEngine, order_id: str, items: list[StockLine], field: str
) -> None:
    with pytest.raises(ServiceError) as raised:
        await reserve_stock(unreachable_engine, order_id, items)

    assert raised.value.kind is ErrorKind.INVALID_ARGUMENT
    assert raised.value.code == "VALIDATION_FAILED"
    assert raised.value.metadata == {"field": field}
    assert raised.value.detail.startswith(field)


async def test_release_refuses_an_order_id_that_is_not_a_canonical_uuid(unreachable_engine: AsyncEngine) -> None:
    with pytest.raises(ServiceError) as raised:
        await release_stock(unreachable_engine, "42")

    assert (raised.value.kind, raised.value.code) == (ErrorKind.INVALID_ARGUMENT, "VALIDATION_FAILED")
    assert raised.value.metadata == {"field": "order_id"}


async def test_reserve_accepts_the_limits_themselves(unreachable_engine: AsyncEngine) -> None:
    """The largest valid request gets past validation and only then fails to reach the database."""
    items = [StockLine(f"SKU-{n:03}", MAX_SKU_QUANTITY) for n in range(MAX_ORDER_LINES)]

    with pytest.raises(ConnectionRefusedError):
        await reserve_stock(unreachable_engine, ORDER_ID, items)
