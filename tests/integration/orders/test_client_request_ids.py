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
from orderflow_contracts.inventory.v1 import inventory_pb2
from orderflow_devstack.infra import Infrastructure
from orderflow_kit.errors import ErrorKind, ServiceError
from orderflow_kit.grpc_client import ErrorDetail, channel, error_detail
from orders.inventory_client import InventoryClient
from orders.placing_orders import Orders, RequestedItem
from tests.integration.orders.helpers import (
    FakeInventory,
    available,
    create_request,
    new_customer,
    stalled_order_writes,
)
from tests.support.databases import database_engine, scalar
from tests.support.polling import eventually
from tests.support.rpc_errors import rpc_error


@pytest.fixture
async def inventory_engine(infra: Infrastructure, inventory_database: str) -> AsyncIterator[AsyncEngine]:
    async with database_engine(infra.postgres_url, inventory_database) as engine:
        yield engine


@pytest.fixture
async def orders_late_answered(
    orders_engine: AsyncEngine, fake_inventory: FakeInventory, fake_inventory_address: str
) -> AsyncIterator[Orders]:
    """Orders whose inventory (the fake) answers each reservation only after half a second."""
    fake_inventory.reserve_delay = 0.5
    async with channel(fake_inventory_address) as connection:
        yield Orders(orders_engine, InventoryClient(connection), inventory_timeout=5.0)


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
    """One copy claims the id and places the order; the others are told it is in flight (a
    retryable ABORTED, never a conclusive answer) and reserve nothing; repeated, they get the order."""
    customer, request_id = new_customer(), uuid.uuid4().hex
    mugs_before = await available(inventory, "TEST-MUG")
    request = create_request(customer, {"TEST-MUG": 3}, client_request_id=request_id)

    answers = await asyncio.gather(
        *(order_service.CreateOrder(request, timeout=10) for _ in range(10)), return_exceptions=True
    )
    repeat = await eventually(lambda: placed_or_in_flight(order_service, request), what="the order, repeated")

    placed = [answer for answer in answers if not isinstance(answer, BaseException)]
    refused = [answer for answer in answers if isinstance(answer, BaseException)]
    assert placed
    assert all(answer == placed[0] for answer in placed)
    assert all(in_flight(error) for error in refused), refused
    assert repeat == placed[0]
    assert await rows_for_request(orders_engine, customer, request_id) == {"orders": 1, "events": 1}
    assert await available(inventory, "TEST-MUG") == mugs_before - 3
    assert await unconserved_stock(inventory_engine) == []


async def test_copies_racing_a_placement_are_in_flight_and_reserve_nothing(
    orders_engine: AsyncEngine, fake_inventory: FakeInventory, orders_late_answered: Orders
) -> None:
    """Inventory answers late, so every copy arrives while the first one's placement runs."""
    customer, request_id = new_customer(), uuid.uuid4().hex

    outcomes = await asyncio.gather(
        *(
            orders_late_answered.place(
                customer, [RequestedItem("MUG-001", 1)], client_request_id=request_id, caller_time_remaining=None
            )
            for _ in range(5)
        ),
        return_exceptions=True,
    )
    await orders_late_answered.finish_unfinished_work(within=10.0)

    [placed] = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert [(error.kind, error.code) for error in refused if isinstance(error, ServiceError)] == [
        (ErrorKind.ABORTED, "CLIENT_REQUEST_IN_FLIGHT")
    ] * 4
    assert fake_inventory.reserve_requests == [str(placed.order_id)]
    assert fake_inventory.release_requests == []
    assert await rows_for_request(orders_engine, customer, request_id) == {"orders": 1, "events": 1}


async def test_a_copy_with_other_items_is_in_flight_then_refused(
    orders_engine: AsyncEngine, fake_inventory: FakeInventory, orders_late_answered: Orders
) -> None:
    customer, request_id = new_customer(), uuid.uuid4().hex

    def place(quantity: int) -> Any:
        return orders_late_answered.place(
            customer, [RequestedItem("MUG-001", quantity)], client_request_id=request_id, caller_time_remaining=None
        )

    first = asyncio.create_task(place(1))
    await eventually(lambda: fake_inventory.reserve_requests, what="the first copy reserving")
    while_placing = await asyncio.gather(place(2), return_exceptions=True)
    placed = await first
    after = await asyncio.gather(place(2), return_exceptions=True)
    await orders_late_answered.finish_unfinished_work(within=10.0)

    [[in_flight_error], [reused]] = while_placing, after
    assert isinstance(in_flight_error, ServiceError)
    assert isinstance(reused, ServiceError)
    assert (in_flight_error.kind, in_flight_error.code) == (ErrorKind.ABORTED, "CLIENT_REQUEST_IN_FLIGHT")
    assert (reused.kind, reused.code) == (ErrorKind.FAILED_PRECONDITION, "CLIENT_REQUEST_ID_REUSED")
    assert reused.metadata == {"order_id": str(placed.order_id)}
    assert fake_inventory.reserve_requests == [str(placed.order_id)]
    assert await rows_for_request(orders_engine, customer, request_id) == {"orders": 1, "events": 1}


async def test_a_repeat_while_the_first_placement_is_stalled_is_in_flight_never_out_of_stock(
    order_service: Any, inventory: Any, orders_engine: AsyncEngine
) -> None:
    """Issue 9.1: the only unit is reserved by the first placement, whose write stalls (a lock on
    the outbox) past its caller's deadline. A repeat must not reserve again and be refused
    OUT_OF_STOCK (an answer the first placement then contradicts by committing): it is told the
    request is in flight, and once the write goes through, every repeat answers that order."""
    customer, request_id, sku = new_customer(), uuid.uuid4().hex, await one_unit_of_a_new_product(inventory)
    request = create_request(customer, {sku: 1}, client_request_id=request_id)

    async with stalled_order_writes(orders_engine):
        first = await rpc_error(order_service.CreateOrder(request, timeout=1.0))
        repeat = await rpc_error(order_service.CreateOrder(request, timeout=5.0))
    order = await eventually(lambda: placed_or_in_flight(order_service, request), what="the stalled order")

    assert first.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert (repeat.code, repeat.detail.code) == (grpc.StatusCode.ABORTED, "CLIENT_REQUEST_IN_FLIGHT")
    assert await order_service.CreateOrder(request, timeout=5.0) == order
    assert await rows_for_request(orders_engine, customer, request_id) == {"orders": 1, "events": 1}
    assert await available(inventory, sku) == 0


async def test_a_placement_taken_over_past_its_lease_records_nothing_and_gives_its_stock_back(
    inventory_address: str, inventory: Any, orders_engine: AsyncEngine
) -> None:
    """A placement stalled beyond its lease (a stuck process, as good as dead) is taken over by a
    repeat. The repeat's answer is then the truth for the request: the stalled placement can no
    longer record its order when its write goes through; it releases its unit instead."""
    customer, request_id, sku = new_customer(), uuid.uuid4().hex, await one_unit_of_a_new_product(inventory)
    async with channel(inventory_address) as connection:
        orders = Orders(orders_engine, InventoryClient(connection), inventory_timeout=5.0, placement_lease=0.2)

        def place() -> Any:
            return orders.place(
                customer, [RequestedItem(sku, 1)], client_request_id=request_id, caller_time_remaining=None
            )

        async with stalled_order_writes(orders_engine):
            stalled = asyncio.create_task(place())
            await eventually(lambda: available(inventory, sku), lambda units: units == 0, what="the unit reserved")
            await eventually(lambda: lease_expired(orders_engine, customer, request_id), what="the lease expired")
            overtaking = await asyncio.gather(place(), return_exceptions=True)
        stalled_outcome = await asyncio.gather(stalled, return_exceptions=True)
        await orders.finish_unfinished_work(within=10.0)
        placed = await place()

    [[refused], [stalled_answer]] = overtaking, stalled_outcome
    assert isinstance(refused, ServiceError)
    assert refused.code == "OUT_OF_STOCK"
    # The stalled placement answers what the request is now: nothing placed, its holder gone.
    assert isinstance(stalled_answer, ServiceError), stalled_answer
    assert await rows_for_request(orders_engine, customer, request_id) == {"orders": 1, "events": 1}
    assert await available(inventory, sku) == 0
    assert placed.lines[0].sku == sku


def in_flight(error: BaseException) -> bool:
    return (
        isinstance(error, grpc.aio.AioRpcError)
        and error.code() == grpc.StatusCode.ABORTED
        and error_detail(error).code == "CLIENT_REQUEST_IN_FLIGHT"
    )


async def placed_or_in_flight(order_service: Any, request: Any) -> Any:
    """The order the request placed, or None while it is in flight."""
    try:
        return await order_service.CreateOrder(request, timeout=5.0)
    except grpc.aio.AioRpcError as error:
        if in_flight(error):
            return None
        raise


async def one_unit_of_a_new_product(inventory: Any) -> str:
    """A SKU of its own, with exactly one unit in stock."""
    sku = f"TEST-ONE-{uuid.uuid4().hex[:8].upper()}"
    line = inventory_pb2.RestockRequest(sku=sku, quantity=1, name="One of a kind", price_cents=100)
    await inventory.RestockStream(iter([line]), timeout=5.0)
    return sku


async def lease_expired(engine: AsyncEngine, customer_id: str, client_request_id: str) -> bool:
    expired = await scalar(
        engine,
        "SELECT placing_until <= now() FROM order_requests"
        " WHERE customer_id = :customer AND client_request_id = :request",
        customer=customer_id,
        request=client_request_id,
    )
    return bool(expired)
