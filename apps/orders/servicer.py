"""The gRPC face of placing_orders (and placing_many): protobuf in, one domain call, protobuf out.
Domain errors are ServiceErrors, which the kit's interceptor turns into statuses with ErrorInfo."""

from collections.abc import AsyncIterator

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_contracts.orders.v1 import orders_pb2
from orderflow_kit.grpc_server import Context
from orders.models import OrderStatus
from orders.outbox import outbox_status
from orders.placing_many import Answer, OrderRequest, place_many
from orders.placing_orders import Orders, PlacedOrder, RequestedItem

_STATUSES = {OrderStatus.CREATED: orders_pb2.ORDER_STATUS_CREATED}


class OrderServicer:
    """orderflow.orders.v1.OrderService (registered with orders_pb2_grpc.add_OrderServiceServicer_to_server)."""

    def __init__(self, orders: Orders, engine: AsyncEngine, *, import_concurrency: int, import_window: int) -> None:
        self._orders = orders
        self._engine = engine
        self._import_concurrency = import_concurrency
        self._import_window = import_window

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

    async def PlaceOrders(
        self, request_iterator: AsyncIterator[orders_pb2.PlaceOrdersRequest], context: Context
    ) -> AsyncIterator[orders_pb2.PlaceOrdersResponse]:
        answers = place_many(
            self._orders,
            _order_requests(request_iterator),
            concurrency=self._import_concurrency,
            window=self._import_window,
            time_remaining=context.time_remaining,
        )
        async for answer in answers:
            yield _answer_message(answer)

    async def GetOutboxStatus(
        self, request: orders_pb2.GetOutboxStatusRequest, context: Context
    ) -> orders_pb2.GetOutboxStatusResponse:
        status = await outbox_status(self._engine)
        return orders_pb2.GetOutboxStatusResponse(
            orders_stored=status.orders_stored,
            pending_events=status.pending_events,
            oldest_pending_age_ms=round(status.oldest_pending_age_seconds * 1000),
        )


async def _order_requests(requests: AsyncIterator[orders_pb2.PlaceOrdersRequest]) -> AsyncIterator[OrderRequest]:
    async for request in requests:
        yield OrderRequest(
            request.customer_id,
            [RequestedItem(item.sku, item.quantity) for item in request.items],
            request.client_request_id,
        )


def _answer_message(answer: Answer) -> orders_pb2.PlaceOrdersResponse:
    response = orders_pb2.PlaceOrdersResponse(index=answer.index, client_request_id=answer.client_request_id)
    if answer.order is not None:
        response.order.CopyFrom(_order_message(answer.order))
    elif answer.refusal is not None:
        refusal = answer.refusal
        response.error.CopyFrom(
            orders_pb2.PlaceOrderError(
                code=refusal.kind, reason=refusal.code, message=refusal.detail, metadata=refusal.metadata
            )
        )
    return response


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
