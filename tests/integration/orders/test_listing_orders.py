"""ListOrders: a customer's orders newest first, in keyset pages that neither skip nor repeat."""

import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_contracts.orders.v1 import orders_pb2
from orderflow_kit.grpc_client import ErrorDetail
from orders.models import ORDERS, OrderStatus
from tests.integration.orders.helpers import new_customer
from tests.support.rpc_errors import rpc_error


@pytest.fixture
def inventory_address(fake_inventory_address: str) -> str:
    return fake_inventory_address


async def place_orders(order_service: Any, customer_id: str, count: int) -> list[str]:
    """Order ids, oldest first."""
    placed = []
    for quantity in range(1, count + 1):
        order = await order_service.CreateOrder(
            orders_pb2.CreateOrderRequest(
                customer_id=customer_id, items=[orders_pb2.OrderItem(sku="MUG-001", quantity=quantity)]
            )
        )
        placed.append(order.order_id)
    return placed


async def all_pages(order_service: Any, customer_id: str, page_size: int) -> list[list[str]]:
    pages: list[list[str]] = []
    token = ""
    while True:
        page = await order_service.ListOrders(
            orders_pb2.ListOrdersRequest(customer_id=customer_id, page_size=page_size, page_token=token)
        )
        pages.append([order.order_id for order in page.orders])
        token = page.next_page_token
        if not token:
            return pages


async def test_pages_go_from_newest_to_oldest_and_the_last_has_no_token(order_service: Any) -> None:
    customer = new_customer()
    placed = await place_orders(order_service, customer, 5)
    await place_orders(order_service, new_customer(), 1)

    pages = await all_pages(order_service, customer, page_size=2)

    newest_first = placed[::-1]
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:5]]


async def test_a_full_last_page_has_no_token_so_no_empty_page_follows(order_service: Any) -> None:
    customer = new_customer()
    placed = await place_orders(order_service, customer, 4)

    pages = await all_pages(order_service, customer, page_size=2)

    newest_first = placed[::-1]
    assert pages == [newest_first[0:2], newest_first[2:4]]


async def test_the_default_page_size_is_20(order_service: Any) -> None:
    customer = new_customer()
    await place_orders(order_service, customer, 21)

    first = await order_service.ListOrders(orders_pb2.ListOrdersRequest(customer_id=customer))
    rest = await order_service.ListOrders(
        orders_pb2.ListOrdersRequest(customer_id=customer, page_token=first.next_page_token)
    )

    assert (len(first.orders), len(rest.orders), rest.next_page_token) == (20, 1, "")


async def test_orders_created_at_the_same_instant_are_paged_by_id_without_skipping_any(
    order_service: Any, orders_engine: AsyncEngine
) -> None:
    customer = new_customer()
    instant = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    order_ids = [uuid.uuid4() for _ in range(7)]
    async with orders_engine.begin() as connection:
        await connection.execute(
            insert(ORDERS),
            [
                {
                    "order_id": order_id,
                    "customer_id": customer,
                    "status": OrderStatus.CREATED.value,
                    "total_cents": 0,
                    "currency": "EUR",
                    "created_at": instant,
                }
                for order_id in order_ids
            ],
        )

    pages = await all_pages(order_service, customer, page_size=3)

    assert [order_id for page in pages for order_id in page] == sorted(map(str, order_ids), reverse=True)


async def test_an_empty_listing_is_one_empty_page(order_service: Any) -> None:
    assert await all_pages(order_service, new_customer(), page_size=5) == [[]]


BAD_LISTINGS = {
    "page size too large": (
        orders_pb2.ListOrdersRequest(customer_id="cust-1", page_size=101),
        ErrorDetail("VALIDATION_FAILED", {"field": "page_size"}),
    ),
    "negative page size": (
        orders_pb2.ListOrdersRequest(customer_id="cust-1", page_size=-1),
        ErrorDetail("VALIDATION_FAILED", {"field": "page_size"}),
    ),
    "malformed customer id": (
        orders_pb2.ListOrdersRequest(customer_id="cust 1"),
        ErrorDetail("VALIDATION_FAILED", {"field": "customer_id"}),
    ),
    "garbled page token": (
        orders_pb2.ListOrdersRequest(customer_id="cust-1", page_token="not-a-token"),
        ErrorDetail("INVALID_PAGE_TOKEN", {}),
    ),
}


@pytest.mark.parametrize(("request_", "detail"), BAD_LISTINGS.values(), ids=BAD_LISTINGS.keys())
async def test_a_bad_listing_request_is_invalid_argument(
    order_service: Any, request_: orders_pb2.ListOrdersRequest, detail: ErrorDetail
) -> None:
    refused = await rpc_error(order_service.ListOrders(request_))

    assert (refused.code, refused.detail) == (grpc.StatusCode.INVALID_ARGUMENT, detail)
