"""CreateOrder with a client_request_id places at most one order, against the REAL inventory and
PostgreSQL: a repeat answers the order it placed, without a second reservation or event; copies
racing each other leave one order and one event; other items under the same id are refused."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.stock_conservation import unconserved_stock
from orderflow_kit.errors import ErrorKind, ServiceError
from orderflow_kit.grpc_client import ErrorDetail, channel
from orderflow_kit.infra import Infrastructure
from orders.inventory_client import InventoryClient
from orders.placing_orders import Orders, RequestedItem
from tests.integration.orders.helpers import FakeInventory, available, create_request, new_customer
from tests.support.databases import database_engine
from tests.support.polling import eventually
from tests.support.rpc_errors import rpc_error


@pytest.fixture
async def inventory_engine(infra: Infrastructure, inventory_database: str) -> AsyncIterator[AsyncEngine]:
    async with database_engine(infra.postgres_url, inventory_database) as engine:
        yield engine


async def rows_for_request(engine: AsyncEngine, customer_id: str, client_request_id: str) -> dict[str, int]:
    """How many orders the request placed, and how many outbox rows those orders have."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                text(
                    "SELECT count(DISTINCT orders.order_id) AS orders, count(outbox.id) AS events FROM orders "
                    "LEFT JOIN outbox ON outbox.aggregate_id = orders.order_id "
                    "WHERE customer_id = :customer AND client_request_id = :request"
                ),
                {"customer": customer_id, "request": client_request_id},
            )
        ).one()
    return {"orders": int(row.orders), "events": int(row.events)}


async def test_a_repeated_request_answers_its_order_and_reserves_nothing_more(
    order_service: Any, inventory: Any, orders_engine: AsyncEngine
) -> None:
    customer, request_id = new_customer(), uuid.uuid4().hex
    mugs_before, lamps_before = await available(inventory, "TEST-MUG"), await available(inventory, "TEST-LAMP")

    first = await order_service.CreateOrder(
        create_request(customer, {"TEST-MUG": 2, "TEST-LAMP": 1}, client_request_id=request_id), timeout=10
    )
    # The same items listed in another order are the same request.
    repeat = await order_service.CreateOrder(
        create_request(customer, {"TEST-LAMP": 1, "TEST-MUG": 2}, client_request_id=request_id), timeout=10
    )

    assert repeat == first
    assert await rows_for_request(orders_engine, customer, request_id) == {"orders": 1, "events": 1}
    assert (await available(inventory, "TEST-MUG"), await available(inventory, "TEST-LAMP")) == (
        mugs_before - 2,
        lamps_before - 1,
    )


async def test_the_same_id_with_other_items_is_refused_and_changes_nothing(
    order_service: Any, inventory: Any, orders_engine: AsyncEngine
) -> None:
    customer, request_id = new_customer(), uuid.uuid4().hex
    first = await order_service.CreateOrder(
        create_request(customer, {"TEST-MUG": 1}, client_request_id=request_id), timeout=10
    )
    mugs_before = await available(inventory, "TEST-MUG")

    refused = await rpc_error(
        order_service.CreateOrder(create_request(customer, {"TEST-MUG": 2}, client_request_id=request_id), timeout=10)
    )

    assert (refused.code, refused.detail) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        ErrorDetail("CLIENT_REQUEST_ID_REUSED", {"order_id": first.order_id}),
    )
    assert f"client_request_id {request_id} already placed order {first.order_id} with other items" in refused.message
    assert await rows_for_request(orders_engine, customer, request_id) == {"orders": 1, "events": 1}
    assert await available(inventory, "TEST-MUG") == mugs_before


async def test_the_id_is_the_customers_own(order_service: Any, orders_engine: AsyncEngine) -> None:
    request_id = uuid.uuid4().hex
    alice, bob = new_customer(), new_customer()

    for_alice = await order_service.CreateOrder(
        create_request(alice, {"TEST-MUG": 1}, client_request_id=request_id), timeout=10
    )
    for_bob = await order_service.CreateOrder(
        create_request(bob, {"TEST-MUG": 1}, client_request_id=request_id), timeout=10
    )

    assert for_alice.order_id != for_bob.order_id
    assert await rows_for_request(orders_engine, alice, request_id) == {"orders": 1, "events": 1}
    assert await rows_for_request(orders_engine, bob, request_id) == {"orders": 1, "events": 1}


@pytest.mark.parametrize("client_request_id", ["", "with space", "caf\u00e9", "tab\there", "x" * 129])
async def test_a_malformed_id_is_invalid_argument_and_reaches_no_one(
    order_service: Any, inventory: Any, orders_engine: AsyncEngine, client_request_id: str
) -> None:
    customer = new_customer()
    mugs_before = await available(inventory, "TEST-MUG")

    refused = await rpc_error(
        order_service.CreateOrder(create_request(customer, {"TEST-MUG": 1}, client_request_id=client_request_id))
    )

    assert (refused.code, refused.detail) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ErrorDetail("VALIDATION_FAILED", {"field": "client_request_id"}),
    )
    assert await available(inventory, "TEST-MUG") == mugs_before


async def test_ten_concurrent_copies_place_one_order_with_one_event_and_take_the_stock_once(
    order_service: Any, inventory: Any, orders_engine: AsyncEngine, inventory_engine: AsyncEngine
) -> None:
    customer, request_id = new_customer(), uuid.uuid4().hex
    mugs_before = await available(inventory, "TEST-MUG")
    request = create_request(customer, {"TEST-MUG": 3}, client_request_id=request_id)

    answers = await asyncio.gather(*(order_service.CreateOrder(request, timeout=10) for _ in range(10)))

    assert len({answer.order_id for answer in answers}) == 1
    assert all(answer == answers[0] for answer in answers)
    assert await rows_for_request(orders_engine, customer, request_id) == {"orders": 1, "events": 1}
    # The copies that lost the race gave their own reservations back.
    await eventually(lambda: available(inventory, "TEST-MUG"), lambda mugs: mugs == mugs_before - 3)
    assert await unconserved_stock(inventory_engine) == []


async def test_copies_that_lose_the_race_release_their_own_reservations(
    orders_engine: AsyncEngine, fake_inventory: FakeInventory, fake_inventory_address: str
) -> None:
    """Inventory answers late, so every copy passes the look-up for an earlier order before any
    commits: all reach the unique constraint, one wins, and the others release what they reserved."""
    fake_inventory.reserve_delay = 0.5
    customer, request_id = new_customer(), uuid.uuid4().hex
    async with channel(fake_inventory_address) as connection:
        orders = Orders(orders_engine, InventoryClient(connection), inventory_timeout=5.0)

        placed = await asyncio.gather(
            *(
                orders.place(
                    customer, [RequestedItem("MUG-001", 1)], client_request_id=request_id, caller_time_remaining=None
                )
                for _ in range(5)
            )
        )
        await orders.finish_unfinished_work(within=10.0)

    [winner] = {str(answer.order_id) for answer in placed}
    assert len(fake_inventory.reserve_requests) == 5
    assert sorted(fake_inventory.release_requests) == sorted(set(fake_inventory.reserve_requests) - {winner})
    assert await rows_for_request(orders_engine, customer, request_id) == {"orders": 1, "events": 1}


async def test_a_racing_copy_with_other_items_is_refused_and_releases_its_reservation(
    orders_engine: AsyncEngine, fake_inventory: FakeInventory, fake_inventory_address: str
) -> None:
    fake_inventory.reserve_delay = 0.5
    customer, request_id = new_customer(), uuid.uuid4().hex
    async with channel(fake_inventory_address) as connection:
        orders = Orders(orders_engine, InventoryClient(connection), inventory_timeout=5.0)

        outcomes = await asyncio.gather(
            *(
                orders.place(
                    customer,
                    [RequestedItem("MUG-001", quantity)],
                    client_request_id=request_id,
                    caller_time_remaining=None,
                )
                for quantity in (1, 2)
            ),
            return_exceptions=True,
        )
        await orders.finish_unfinished_work(within=10.0)

    [placed] = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    [refused] = [outcome for outcome in outcomes if isinstance(outcome, ServiceError)]
    assert (refused.kind, refused.code) == (ErrorKind.FAILED_PRECONDITION, "CLIENT_REQUEST_ID_REUSED")
    assert refused.metadata == {"order_id": str(placed.order_id)}
    assert fake_inventory.release_requests == [
        order_id for order_id in fake_inventory.reserve_requests if order_id != str(placed.order_id)
    ]
    assert await rows_for_request(orders_engine, customer, request_id) == {"orders": 1, "events": 1}
