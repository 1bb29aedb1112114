"""What orders does when inventory is slow or the caller gives up, with a fake inventory that
answers late; and that a malformed order never reaches inventory at all."""

import asyncio
import uuid
from typing import Any

import grpc
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_contracts.identifiers import MAX_SKU_QUANTITY
from orderflow_contracts.orders.v1 import orders_pb2, orders_pb2_grpc
from orderflow_kit.grpc_client import ErrorDetail, channel
from orders.settings import OrdersSettings
from tests.integration.orders.helpers import FakeInventory, count_rows
from tests.support.polling import eventually
from tests.support.rpc_errors import rpc_error
from tests.support.services import serving_orders

INVENTORY_TIMEOUT = 0.3


@pytest.fixture
def inventory_address(fake_inventory_address: str) -> str:
    return fake_inventory_address


@pytest.fixture
def orders_settings(orders_settings: OrdersSettings) -> OrdersSettings:
    return orders_settings.model_copy(update={"inventory_timeout_seconds": INVENTORY_TIMEOUT})


def create_request(
    customer_id: str = "cust-1", quantity: int = 1, sku: str = "MUG-001"
) -> orders_pb2.CreateOrderRequest:
    return orders_pb2.CreateOrderRequest(
        customer_id=customer_id, items=[orders_pb2.OrderItem(sku=sku, quantity=quantity)]
    )


MALFORMED = {
    "customer id": ("customer_id", create_request(customer_id="cust 1")),
    "no items": ("items", orders_pb2.CreateOrderRequest(customer_id="cust-1")),
    "quantity": ("items[0].quantity", create_request(quantity=MAX_SKU_QUANTITY + 1)),
    "sku": ("items[0].sku", create_request(sku="mug")),
}


@pytest.mark.parametrize(("field", "request_"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_order_is_refused_before_inventory_is_called(
    order_service: Any, fake_inventory: FakeInventory, field: str, request_: orders_pb2.CreateOrderRequest
) -> None:
    refused = await rpc_error(order_service.CreateOrder(request_))

    assert (refused.code, refused.detail) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ErrorDetail("VALIDATION_FAILED", {"field": field}),
    )
    assert fake_inventory.reserve_requests == []


async def test_a_slow_inventory_is_a_timeout_and_the_reservation_is_released(
    order_service: Any, fake_inventory: FakeInventory, orders_engine: AsyncEngine
) -> None:
    fake_inventory.reserve_delay = 5.0

    refused = await rpc_error(order_service.CreateOrder(create_request(), timeout=10))

    assert (refused.code, refused.detail) == (grpc.StatusCode.DEADLINE_EXCEEDED, ErrorDetail("INVENTORY_TIMEOUT", {}))
    [order_id] = fake_inventory.reserve_requests
    await eventually(lambda: fake_inventory.release_requests == [order_id])
    assert await count_rows(orders_engine, order_id) == {"orders": 0, "order_lines": 0, "outbox": 0}


async def test_the_callers_shorter_deadline_bounds_the_inventory_call(
    orders_settings: OrdersSettings, fake_inventory: FakeInventory, orders_engine: AsyncEngine
) -> None:
    """Inventory answers after 1 s, well within orders' own 5 s limit, but the caller allowed
    0.3 s: orders passes that on, gives up with its caller, and releases."""
    fake_inventory.reserve_delay = 1.0
    patient = orders_settings.model_copy(update={"inventory_timeout_seconds": 5.0})

    async with serving_orders(patient) as address, channel(address) as connection:
        refused = await rpc_error(
            orders_pb2_grpc.OrderServiceStub(connection).CreateOrder(create_request(), timeout=0.3)
        )
        [order_id] = fake_inventory.reserve_requests
        await eventually(lambda: fake_inventory.release_requests == [order_id])

    assert refused.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await count_rows(orders_engine, order_id) == {"orders": 0, "order_lines": 0, "outbox": 0}


async def test_a_caller_that_cancels_mid_reservation_still_leaves_a_whole_order(
    order_service: Any, fake_inventory: FakeInventory, orders_settings: OrdersSettings, orders_engine: AsyncEngine
) -> None:
    """Once inventory may hold stock, the placement runs to its end without the caller: here the
    reservation succeeds after the caller left, so the order and its event are recorded."""
    fake_inventory.reserve_delay = INVENTORY_TIMEOUT / 2
    call = order_service.CreateOrder(create_request(customer_id=f"cust-{uuid.uuid4().hex[:8]}"), timeout=10)
    await eventually(lambda: len(fake_inventory.reserve_requests) == 1)

    call.cancel()

    with pytest.raises(asyncio.CancelledError):
        await call
    [order_id] = fake_inventory.reserve_requests
    await eventually(
        lambda: count_rows(orders_engine, order_id), lambda rows: rows == {"orders": 1, "order_lines": 1, "outbox": 1}
    )
    assert fake_inventory.release_requests == []
