"""The gRPC face of placing_orders: protobuf in, one domain call, protobuf out. Domain errors are
ServiceErrors, which the kit's interceptor turns into statuses with ErrorInfo."""

from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_contracts.orders.v1 import orders_pb2
from orders.models import OrderStatus
from orders.outbox import outbox_status
from orders.placing_orders import Orders, PlacedOrder, RequestedItem

_STATUSES = {OrderStatus.CREATED: orders_pb2.ORDER_STATUS_CREATED}

Context = grpc.aio.ServicerContext[Any, Any]


class OrderServicer:
    """orderflow.orders.v1.OrderService (registered with orders_pb2_grpc.add_OrderServiceServicer_to_server)."""

    def __init__(self, orders: Orders, engine: AsyncEngine) -> None:
        self._orders = orders
        self._engine = engine

    async def CreateOrder(self, request: orders_pb2.CreateOrderRequest, context: Context) -> orders_pb2.Order:
        placed = await self._orders.place(
            request.customer_id,
            [RequestedItem(item.sku, item.quantity) for item in request.items],
            client_request_id=request.client_request_id if request.HasField("client_request_id") else None,
            caller_time_remaining=context.time_remaining(),
        )
        return _order_message(placed)

    async def GetOrder(self, request: orders_pb2.GetOrderRequest, context: Context) -> orders_pb2.Order:
        return _order_message(await self._orders.get(request.order_id))

    async def ListOrders(
        self, request: orders_pb2.ListOrdersRequest, context: Context
    ) -> orders_pb2.ListOrdersResponse:
        page = await self._orders.list_for_customer(request.customer_id, request.page_size, request.page_token)
        return orders_pb2.ListOrdersResponse(
            orders=[_order_message(placed) for placed in page.orders], next_page_token=page.next_page_token
        )

    async def GetOutboxStatus(
        self, request: orders_pb2.GetOutboxStatusRequest, context: Context
    ) -> orders_pb2.GetOutboxStatusResponse:
        status = await outbox_status(self._engine)
        return orders_pb2.GetOutboxStatusResponse(
            orders_stored=status.orders_stored,
            pending_events=status.pending_events,
            oldest_pending_age_ms=round(status.oldest_pending_age_seconds * 1000),
        )


def _order_message(placed: PlacedOrder) -> orders_pb2.Order:
    created_at = Timestamp()
    created_at.FromDatetime(placed.created_at)
    return orders_pb2.Order(
        order_id=str(placed.order_id),
        customer_id=placed.customer_id,
        status=_STATUSES[placed.status],
        items=[
            orders_pb2.OrderLine(sku=line.sku, quantity=line.quantity, unit_price_cents=line.unit_price_cents)
            for line in placed.lines
        ],
        total_cents=placed.total_cents,
        currency=placed.currency,
        created_at=created_at,
    )
