"""Small in-test stand-ins for the orders, inventory and loyalty services, served over real gRPC.

They answer like the real services (ServiceError -> status with ErrorInfo, standard health check),
record the metadata of every call, and can be told to fail or to hang. The real services are
covered by their own tests and by the end-to-end tests."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NoReturn

import grpc
from grpc_status import rpc_status

from orderflow_contracts.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from orderflow_contracts.loyalty.v1 import loyalty_pb2, loyalty_pb2_grpc
from orderflow_contracts.orders.v1 import orders_pb2, orders_pb2_grpc
from orderflow_kit.errors import ServiceError, not_found
from orderflow_kit.grpc_server import Context, to_rpc_status
from tests.support.grpc_servers import RunningServer, serving_servicer

PRICES_CENTS = {"SKU-1": 1250, "SKU-2": 500}
# What a failure that did not come from our domain code says; it must never reach an HTTP client.
INTERNAL_MESSAGE = "db at 10.1.2.3:5432 said: relation secret_table does not exist"


@dataclass
class Behaviour:
    """How a fake answers its next calls: normally, with an error, or only once `held` is set."""

    failure: ServiceError | grpc.StatusCode | None = None
    held: asyncio.Event | None = None
    calls: list[dict[str, str]] = field(default_factory=list)
    called: asyncio.Event = field(default_factory=asyncio.Event)

    async def before_answering(self, context: Context) -> None:
        self.calls.append({key: str(value) for key, value in context.invocation_metadata() or ()})
        self.called.set()
        if self.held is not None:
            await self.held.wait()
        if isinstance(self.failure, ServiceError):
            await abort_with(context, self.failure)
        if isinstance(self.failure, grpc.StatusCode):
            await context.abort(self.failure, INTERNAL_MESSAGE)


async def abort_with(context: Context, error: ServiceError) -> NoReturn:
    """Fail the call as the real services do: the error's status, with its ErrorInfo."""
    status = rpc_status.to_status(to_rpc_status(error))
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("abort raises")


class FakeOrders(orders_pb2_grpc.OrderServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.orders: list[orders_pb2.Order] = []
        self.create_requests: list[orders_pb2.CreateOrderRequest] = []

    async def CreateOrder(self, request: orders_pb2.CreateOrderRequest, context: Context) -> orders_pb2.Order:
        self.create_requests.append(request)
        await self.behaviour.before_answering(context)
        lines = [
            orders_pb2.OrderLine(sku=item.sku, quantity=item.quantity, unit_price_cents=PRICES_CENTS[item.sku])
            for item in request.items
        ]
        order = orders_pb2.Order(
            order_id=str(uuid.uuid4()),
            customer_id=request.customer_id,
            status=orders_pb2.ORDER_STATUS_CREATED,
            items=lines,
            total_cents=sum(line.quantity * line.unit_price_cents for line in lines),
            currency="EUR",
            created_at=datetime.now(UTC),
        )
        self.orders.append(order)
        return order

    async def GetOrder(self, request: orders_pb2.GetOrderRequest, context: Context) -> orders_pb2.Order:
        await self.behaviour.before_answering(context)
        for order in self.orders:
            if order.order_id == request.order_id:
                return order
        await abort_with(context, not_found("ORDER_NOT_FOUND", f"order {request.order_id} does not exist"))

    async def ListOrders(
        self, request: orders_pb2.ListOrdersRequest, context: Context
    ) -> orders_pb2.ListOrdersResponse:
        """Oldest first, the page token being the index to start at: enough to exercise paging."""
        await self.behaviour.before_answering(context)
        mine = [order for order in self.orders if order.customer_id == request.customer_id]
        start = int(request.page_token or 0)
        end = start + (request.page_size or 20)
        return orders_pb2.ListOrdersResponse(
            orders=mine[start:end], next_page_token=str(end) if end < len(mine) else ""
        )


class FakeInventory(inventory_pb2_grpc.InventoryServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.behaviour = Behaviour()

    async def ListProducts(
        self, request: inventory_pb2.ListProductsRequest, context: Context
    ) -> inventory_pb2.ListProductsResponse:
        await self.behaviour.before_answering(context)
        return inventory_pb2.ListProductsResponse(
            products=[
                inventory_pb2.Product(sku=sku, name=f"Product {sku}", price_cents=price, currency="EUR", available=10)
                for sku, price in PRICES_CENTS.items()
            ]
        )


class FakeLoyalty(loyalty_pb2_grpc.LoyaltyServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.points: dict[str, int] = {}

    async def GetBalance(self, request: loyalty_pb2.GetBalanceRequest, context: Context) -> loyalty_pb2.Balance:
        await self.behaviour.before_answering(context)
        points = self.points.get(request.customer_id, 0)
        return loyalty_pb2.Balance(customer_id=request.customer_id, points=points, orders_awarded=1 if points else 0)


@dataclass
class Fakes:
    orders: FakeOrders
    inventory: FakeInventory
    loyalty: FakeLoyalty
    orders_server: RunningServer
    inventory_server: RunningServer
    loyalty_server: RunningServer


@asynccontextmanager
async def fake_services() -> AsyncIterator[Fakes]:
    orders, inventory, loyalty = FakeOrders(), FakeInventory(), FakeLoyalty()
    async with (
        serving_servicer(
            orders, orders_pb2_grpc.add_OrderServiceServicer_to_server, healthy=_service(orders_pb2, "OrderService")
        ) as orders_server,
        serving_servicer(
            inventory,
            inventory_pb2_grpc.add_InventoryServiceServicer_to_server,
            healthy=_service(inventory_pb2, "InventoryService"),
        ) as inventory_server,
        serving_servicer(
            loyalty,
            loyalty_pb2_grpc.add_LoyaltyServiceServicer_to_server,
            healthy=_service(loyalty_pb2, "LoyaltyService"),
        ) as loyalty_server,
    ):
        yield Fakes(orders, inventory, loyalty, orders_server, inventory_server, loyalty_server)


def _service(contract: object, name: str) -> str:
    full_name: str = contract.DESCRIPTOR.services_by_name[name].full_name  # type: ignore[attr-defined]
    return full_name
