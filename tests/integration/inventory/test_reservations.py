"""Reserving and releasing stock through the real gRPC server and PostgreSQL."""

import asyncio
import uuid
from typing import Any

import grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.stock_conservation import StockCount
from orderflow_contracts.inventory.v1 import inventory_pb2
from tests.integration.inventory.helpers import add_product, available, stock_of
from tests.support.databases import scalar
from tests.support.polling import eventually
from tests.support.rpc_errors import rpc_error


def reserve_request(order_id: str, quantities: dict[str, int]) -> inventory_pb2.ReserveStockRequest:
    items = [inventory_pb2.StockLine(sku=sku, quantity=quantity) for sku, quantity in quantities.items()]
    return inventory_pb2.ReserveStockRequest(order_id=order_id, items=items)


def new_order_id() -> str:
    return str(uuid.uuid4())


async def waiting_on_locks(engine: AsyncEngine, database: str) -> int:
    """How many sessions on the database wait for a lock."""
    count = await scalar(
        engine, "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND wait_event_type = 'Lock'", db=database
    )
    return int(count or 0)


async def test_reserve_takes_every_line_at_the_catalog_price(inventory: Any, engine: AsyncEngine) -> None:
    mug, lamp = await add_product(engine, stock=10, price_cents=1290), await add_product(engine, 3, 5490)
    order_id = new_order_id()

    reservation = await inventory.ReserveStock(reserve_request(order_id, {lamp: 1, mug: 2}))

    assert reservation.order_id == order_id
    assert reservation.currency == "EUR"
    assert sorted((line.sku, line.quantity, line.unit_price_cents) for line in reservation.lines) == sorted(
        [(mug, 2, 1290), (lamp, 1, 5490)]
    )
    assert (await available(engine, mug), await available(engine, lamp)) == (8, 2)


async def test_reserve_is_all_or_nothing(inventory: Any, engine: AsyncEngine) -> None:
    plenty, scarce = await add_product(engine, stock=10), await add_product(engine, stock=1)

    code, detail, _ = await rpc_error(inventory.ReserveStock(reserve_request(new_order_id(), {plenty: 4, scarce: 2})))
    unknown_code, _, _ = await rpc_error(
        inventory.ReserveStock(reserve_request(new_order_id(), {plenty: 4, "NO-SUCH-SKU": 1}))
    )

    assert (code, detail.code, unknown_code) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "OUT_OF_STOCK",
        grpc.StatusCode.NOT_FOUND,
    )
    assert (await available(engine, plenty), await available(engine, scarce)) == (10, 1)


async def test_a_refused_reserve_can_be_retried_once_there_is_stock(inventory: Any, engine: AsyncEngine) -> None:
    sku = await add_product(engine, stock=1)
    request = reserve_request(new_order_id(), {sku: 2})
    await rpc_error(inventory.ReserveStock(request))
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE products SET available = 5 WHERE sku = :sku"), {"sku": sku})

    reservation = await inventory.ReserveStock(request)

    assert [(line.sku, line.quantity) for line in reservation.lines] == [(sku, 2)]
    assert await available(engine, sku) == 3


async def test_a_repeated_reserve_returns_the_stored_answer_and_takes_stock_once(
    inventory: Any, engine: AsyncEngine
) -> None:
    first_sku, second_sku = await add_product(engine, stock=10, price_cents=700), await add_product(engine, stock=10)
    order_id = new_order_id()
    first = await inventory.ReserveStock(reserve_request(order_id, {first_sku: 2, second_sku: 1}))
    async with engine.begin() as connection:  # a price change after the reservation
        await connection.execute(text("UPDATE products SET price_cents = 900 WHERE sku = :sku"), {"sku": first_sku})

    repeat = await inventory.ReserveStock(reserve_request(order_id, {second_sku: 1, first_sku: 2}))

    assert repeat == first
    assert (await available(engine, first_sku), await available(engine, second_sku)) == (8, 9)


async def test_two_identical_reserves_racing_take_stock_once(
    inventory: Any, engine: AsyncEngine, database: str
) -> None:
    """A lock held by the test keeps the first request inside its transaction; the second then
    waits on the reservation's primary key and, once the first commits, answers from it."""
    sku = await add_product(engine, stock=10)
    request = reserve_request(new_order_id(), {sku: 3})

    async with engine.connect() as blocker:
        await blocker.execute(text("SELECT 1 FROM products WHERE sku = :sku FOR UPDATE"), {"sku": sku})
        first = asyncio.ensure_future(inventory.ReserveStock(request))
        await eventually(lambda: waiting_on_locks(engine, database), lambda waiting: waiting == 1)
        second = asyncio.ensure_future(inventory.ReserveStock(request))
        await eventually(lambda: waiting_on_locks(engine, database), lambda waiting: waiting == 2)
        await blocker.rollback()
    answers = await asyncio.gather(first, second)

    assert answers[0] == answers[1]
    assert await available(engine, sku) == 7


async def test_a_reserve_waiting_behind_a_restock_takes_the_restocked_units(
    inventory: Any, engine: AsyncEngine, database: str
) -> None:
    """Stock is judged as the lock finds it, the restock committed, not as it was when the
    reserve began waiting."""
    sku = await add_product(engine, stock=0)

    async with engine.connect() as restocking:
        await restocking.execute(text("UPDATE products SET available = 5, received = 5 WHERE sku = :sku"), {"sku": sku})
        reserving = asyncio.ensure_future(inventory.ReserveStock(reserve_request(new_order_id(), {sku: 2})))
        await eventually(lambda: waiting_on_locks(engine, database), lambda waiting: waiting == 1)
        await restocking.commit()
    reservation = await reserving

    assert [(line.sku, line.quantity) for line in reservation.lines] == [(sku, 2)]
    assert await stock_of(engine, sku) == {sku: StockCount(sku, received=5, available=3, reserved=2, confirmed=0)}


async def test_release_gives_the_stock_back_once(inventory: Any, engine: AsyncEngine) -> None:
    first_sku, second_sku = await add_product(engine, stock=5), await add_product(engine, stock=5)
    order_id = new_order_id()
    await inventory.ReserveStock(reserve_request(order_id, {first_sku: 2, second_sku: 5}))

    released = await inventory.ReleaseStock(inventory_pb2.ReleaseStockRequest(order_id=order_id))
    released_again = await inventory.ReleaseStock(inventory_pb2.ReleaseStockRequest(order_id=order_id))

    assert (released.released, released_again.released) == (True, False)
    assert (await available(engine, first_sku), await available(engine, second_sku)) == (5, 5)


async def test_releasing_an_order_never_reserved_leaves_a_tombstone_that_refuses_a_late_reserve(
    inventory: Any, engine: AsyncEngine
) -> None:
    sku = await add_product(engine, stock=5)
    order_id = new_order_id()

    released = await inventory.ReleaseStock(inventory_pb2.ReleaseStockRequest(order_id=order_id))
    code, detail, _ = await rpc_error(inventory.ReserveStock(reserve_request(order_id, {sku: 1})))

    assert released.released is False
    assert (code, detail.code) == (grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_RELEASED")
    assert await available(engine, sku) == 5
