"""gRPC calls between services are retried on UNAVAILABLE only when they are idempotent, and
never beyond the caller's deadline (orderflow_kit.failures, applied by grpc_client.channel).
Fake servers that fail the first attempts stand in for a service that is restarting."""

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import grpc

from gateway.settings import GatewaySettings
from gateway.upstreams import Upstreams
from orderflow_contracts.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from orderflow_contracts.orders.v1 import orders_pb2, orders_pb2_grpc
from orderflow_kit.grpc_client import channel
from orders.inventory_client import InventoryClient
from tests.support.grpc_servers import serving_servicer
from tests.support.rpc_errors import rpc_error


@dataclass
class Unavailable:
    """Answers UNAVAILABLE to the first `failures` attempts (after `delay` seconds each), then succeeds."""

    failures: int
    delay: float = 0.0
    attempts: int = 0

    async def attempt(self, context: Any) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            await asyncio.sleep(self.delay)
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"attempt {self.attempts}: restarting")


class FlakyInventory(inventory_pb2_grpc.InventoryServiceServicer):  # type: ignore[misc]
    def __init__(self, failing: Unavailable) -> None:
        self.failing = failing

    async def ReserveStock(self, request: inventory_pb2.ReserveStockRequest, context: Any) -> inventory_pb2.Reservation:
        await self.failing.attempt(context)
        lines = [
            inventory_pb2.ReservedLine(sku=item.sku, quantity=item.quantity, unit_price_cents=100)
            for item in request.items
        ]
        return inventory_pb2.Reservation(order_id=request.order_id, lines=lines, currency="EUR")

    async def ReleaseStock(
        self, request: inventory_pb2.ReleaseStockRequest, context: Any
    ) -> inventory_pb2.ReleaseStockResponse:
        await self.failing.attempt(context)
        return inventory_pb2.ReleaseStockResponse(released=True)

    async def RestockStream(self, requests: Any, context: Any) -> inventory_pb2.RestockSummary:
        await self.failing.attempt(context)
        return inventory_pb2.RestockSummary(messages=len([request async for request in requests]))


class FlakyOrders(orders_pb2_grpc.OrderServiceServicer):  # type: ignore[misc]
    def __init__(self, failing: Unavailable) -> None:
        self.failing = failing

    async def CreateOrder(self, request: orders_pb2.CreateOrderRequest, context: Any) -> orders_pb2.Order:
        await self.failing.attempt(context)
        return orders_pb2.Order(order_id=str(uuid.uuid4()), customer_id=request.customer_id)

    async def GetOrder(self, request: orders_pb2.GetOrderRequest, context: Any) -> orders_pb2.Order:
        await self.failing.attempt(context)
        return orders_pb2.Order(order_id=request.order_id)


async def test_reserve_stock_failing_unavailable_twice_is_retried_and_succeeds_within_the_deadline() -> None:
    inventory = FlakyInventory(Unavailable(failures=2))
    async with (
        serving_servicer(inventory, inventory_pb2_grpc.add_InventoryServiceServicer_to_server) as fake,
        channel(fake.address) as connection,  # what orders.main opens to inventory
    ):
        started = time.monotonic()
        reservation = await InventoryClient(connection).reserve(uuid.uuid4(), {"SKU-1": 2}, time_limit=2.0)
        elapsed = time.monotonic() - started

    assert inventory.failing.attempts == 3
    assert [(line.sku, line.quantity) for line in reservation.lines] == [("SKU-1", 2)]
    assert elapsed < 2.0


async def test_the_gateway_never_retries_create_order_but_retries_get_order() -> None:
    """A retried CreateOrder could create the order twice: one attempt, and the caller sees UNAVAILABLE."""
    orders = FlakyOrders(Unavailable(failures=2))
    async with serving_servicer(orders, orders_pb2_grpc.add_OrderServiceServicer_to_server) as fake:
        upstreams = Upstreams.open(GatewaySettings(orders_addr=fake.address, grpc_deadline_seconds=2.0))
        try:
            refused = await rpc_error(
                upstreams.call(upstreams.orders.CreateOrder, orders_pb2.CreateOrderRequest(customer_id="cust-1"))
            )
            create_attempts = orders.failing.attempts
            orders.failing.attempts = 0
            order_id = str(uuid.uuid4())
            found = await upstreams.call(upstreams.orders.GetOrder, orders_pb2.GetOrderRequest(order_id=order_id))
        finally:
            await upstreams.close()

    assert (refused.code, create_attempts) == (grpc.StatusCode.UNAVAILABLE, 1)
    assert (found.order_id, orders.failing.attempts) == (order_id, 3)


async def test_retries_stop_at_the_callers_deadline() -> None:
    """Each attempt takes 0.3 s before failing: within a 0.5 s deadline there is room for two
    attempts, and the call ends at the deadline, not after the three attempts the policy allows."""
    inventory = FlakyInventory(Unavailable(failures=10, delay=0.3))
    async with (
        serving_servicer(inventory, inventory_pb2_grpc.add_InventoryServiceServicer_to_server) as fake,
        channel(fake.address) as connection,
    ):
        started = time.monotonic()
        outcome = await rpc_error(
            inventory_pb2_grpc.InventoryServiceStub(connection).ReserveStock(
                inventory_pb2.ReserveStockRequest(order_id=str(uuid.uuid4())), timeout=0.5
            )
        )
        elapsed = time.monotonic() - started

    assert outcome.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert inventory.failing.attempts == 2
    assert elapsed < 0.8


async def test_one_release_stock_call_is_retried_through_unavailable() -> None:
    """ReleaseStock is idempotent too: one call (not a loop of the caller's) gets through a restart."""
    inventory = FlakyInventory(Unavailable(failures=2))
    async with (
        serving_servicer(inventory, inventory_pb2_grpc.add_InventoryServiceServicer_to_server) as fake,
        channel(fake.address) as connection,
    ):
        released = await inventory_pb2_grpc.InventoryServiceStub(connection).ReleaseStock(
            inventory_pb2.ReleaseStockRequest(order_id=str(uuid.uuid4())), timeout=2.0
        )

    assert (released.released, inventory.failing.attempts) == (True, 3)


async def test_a_restock_stream_is_never_retried() -> None:
    """A repeated restock would add its units twice: one attempt, and the caller sees UNAVAILABLE."""
    inventory = FlakyInventory(Unavailable(failures=1))
    async with (
        serving_servicer(inventory, inventory_pb2_grpc.add_InventoryServiceServicer_to_server) as fake,
        channel(fake.address) as connection,
    ):
        refused = await rpc_error(
            inventory_pb2_grpc.InventoryServiceStub(connection).RestockStream(
                iter([inventory_pb2.RestockRequest(sku="SKU-1", quantity=5)]), timeout=2.0
            )
        )

    assert (refused.code, inventory.failing.attempts) == (grpc.StatusCode.UNAVAILABLE, 1)
