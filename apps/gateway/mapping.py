"""Protobuf <-> JSON: the one place where the REST shapes meet the gRPC contracts."""

from datetime import UTC
from typing import Any

from gateway.schemas import (
    CreateOrderIn,
    LoyaltyBalanceOut,
    OrderLineOut,
    OrderOut,
    OrderPage,
    ProductList,
    ProductOut,
    RestockedProductOut,
    RestockIn,
    RestockSummaryOut,
)
from orderflow_contracts.inventory.v1 import inventory_pb2
from orderflow_contracts.loyalty.v1 import loyalty_pb2
from orderflow_contracts.orders.v1 import orders_pb2

_STATUS_PREFIX = "ORDER_STATUS_"


def create_order_request(
    customer_id: str, body: CreateOrderIn, client_request_id: str | None = None
) -> orders_pb2.CreateOrderRequest:
    """`customer_id` is whom gateway.auth decided the order is for, not necessarily the body's."""
    return orders_pb2.CreateOrderRequest(
        customer_id=customer_id,
        items=[orders_pb2.OrderItem(sku=sku, quantity=quantity) for sku, quantity in body.quantities().items()],
        client_request_id=client_request_id,
    )


def understood_order(customer_id: str, body: CreateOrderIn) -> dict[str, Any]:
    """The order as the gateway understood it, what an Idempotency-Key's fingerprint is of: the
    customer gateway.auth decided on, whether the body named it or not, and each SKU's units in SKU
    order, as orders too takes the same lines in another order, or split, for the same request."""
    return {
        "customer_id": customer_id,
        "items": [{"sku": sku, "quantity": quantity} for sku, quantity in sorted(body.quantities().items())],
    }


def order_status(status: orders_pb2.OrderStatus) -> str:
    """ORDER_STATUS_CREATED -> CREATED: the enum prefix is a protobuf convention, not part of the API."""
    return orders_pb2.OrderStatus.Name(status).removeprefix(_STATUS_PREFIX)


def order_out(order: orders_pb2.Order) -> OrderOut:
    return OrderOut(
        order_id=order.order_id,
        customer_id=order.customer_id,
        status=order_status(order.status),
        items=[OrderLineOut.model_validate(line) for line in order.items],
        total_cents=order.total_cents,
        currency=order.currency,
        created_at=order.created_at.ToDatetime(tzinfo=UTC),
    )


def order_page(response: orders_pb2.ListOrdersResponse) -> OrderPage:
    return OrderPage(
        orders=[order_out(order) for order in response.orders],
        next_page_token=response.next_page_token or None,
    )


def product_list(response: inventory_pb2.ListProductsResponse) -> ProductList:
    return ProductList(products=[ProductOut.model_validate(product) for product in response.products])


def restock_requests(body: RestockIn) -> list[inventory_pb2.RestockRequest]:
    """One message per line, streamed as they are: the service adds up lines for the same SKU."""
    return [
        inventory_pb2.RestockRequest(sku=line.sku, quantity=line.quantity, name=line.name, price_cents=line.price_cents)
        for line in body.lines
    ]


def restock_summary(summary: inventory_pb2.RestockSummary) -> RestockSummaryOut:
    return RestockSummaryOut(
        lines=summary.messages,
        products=[RestockedProductOut.model_validate(product) for product in summary.products],
    )


def loyalty_balance(balance: loyalty_pb2.Balance) -> LoyaltyBalanceOut:
    return LoyaltyBalanceOut.model_validate(balance)
