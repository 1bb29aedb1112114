"""Protobuf -> JSON: the shapes the REST API promises, without any server."""

import json
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from gateway import mapping
from gateway.schemas import CreateOrderIn
from orderflow_contracts.identifiers import MAX_ORDER_LINES, MAX_QUANTITY, MAX_SKU_QUANTITY
from orderflow_contracts.inventory.v1 import inventory_pb2
from orderflow_contracts.loyalty.v1 import loyalty_pb2
from orderflow_contracts.orders.v1 import orders_pb2

ORDER_ID = "0b7e8f4c-3a64-4c55-9d0e-4b8a2f7c1d23"


def an_order() -> orders_pb2.Order:
    created_at = Timestamp()
    created_at.FromDatetime(datetime(2026, 11, 21, 4, 32, 7, 250000, tzinfo=UTC))
    return orders_pb2.Order(
        order_id=ORDER_ID,
        customer_id="customer-1",
        status=orders_pb2.ORDER_STATUS_CREATED,
        items=[
            orders_pb2.OrderLine(sku="SKU-1", quantity=2, unit_price_cents=1250),
            orders_pb2.OrderLine(sku="SKU-2", quantity=1, unit_price_cents=500),
        ],
        total_cents=3000,
        currency="EUR",
        created_at=created_at,
    )


def test_an_order_becomes_the_documented_json() -> None:
    body = json.loads(mapping.order_out(an_order()).model_dump_json())

    assert body == {
        "order_id": ORDER_ID,
        "customer_id": "customer-1",
        "status": "CREATED",
        "items": [
            {"sku": "SKU-1", "quantity": 2, "unit_price_cents": 1250},
            {"sku": "SKU-2", "quantity": 1, "unit_price_cents": 500},
        ],
        "total_cents": 3000,
        "currency": "EUR",
        "created_at": "2026-11-21T04:32:07.250000Z",
    }


def test_created_at_is_rfc_3339_in_utc() -> None:
    created_at = mapping.order_out(an_order()).created_at

    assert created_at.utcoffset() is not None
    assert datetime.fromisoformat(created_at.isoformat()) == datetime(2026, 11, 21, 4, 32, 7, 250000, tzinfo=UTC)


def test_the_status_loses_its_protobuf_prefix() -> None:
    assert mapping.order_status(orders_pb2.ORDER_STATUS_CREATED) == "CREATED"
    assert mapping.order_status(orders_pb2.ORDER_STATUS_UNSPECIFIED) == "UNSPECIFIED"


def test_the_last_page_has_a_null_next_page_token() -> None:
    last = mapping.order_page(orders_pb2.ListOrdersResponse(orders=[an_order()], next_page_token=""))
    more = mapping.order_page(orders_pb2.ListOrdersResponse(orders=[an_order()], next_page_token="abc"))

    assert last.next_page_token is None
    assert more.next_page_token == "abc"
    assert [order.order_id for order in last.orders] == [ORDER_ID]


def test_products_keep_price_currency_and_availability() -> None:
    response = inventory_pb2.ListProductsResponse(
        products=[inventory_pb2.Product(sku="SKU-1", name="Mug", price_cents=1250, currency="EUR", available=7)]
    )

    assert mapping.product_list(response).model_dump() == {
        "products": [{"sku": "SKU-1", "name": "Mug", "price_cents": 1250, "currency": "EUR", "available": 7}]
    }


def test_a_loyalty_balance_keeps_points_and_awarded_orders() -> None:
    balance = loyalty_pb2.Balance(customer_id="customer-1", points=42, orders_awarded=3)

    assert mapping.loyalty_balance(balance).model_dump() == {
        "customer_id": "customer-1",
        "points": 42,
        "orders_awarded": 3,
    }


def test_a_create_order_body_becomes_the_grpc_request_for_the_customer_auth_decided() -> None:
    body = CreateOrderIn.model_validate({"items": [{"sku": "SKU-1", "quantity": 2}]})

    request = mapping.create_order_request("customer-1", body)

    assert request == orders_pb2.CreateOrderRequest(
        customer_id="customer-1", items=[orders_pb2.OrderItem(sku="SKU-1", quantity=2)]
    )


def test_lines_for_one_sku_add_up_to_one_item_each_at_most_what_the_services_take() -> None:
    lines = [{"sku": "SKU-2", "quantity": 1}] + [{"sku": "SKU-1", "quantity": MAX_QUANTITY}] * MAX_ORDER_LINES
    body = CreateOrderIn.model_validate({"items": lines[:MAX_ORDER_LINES]})

    request = mapping.create_order_request("customer-1", body)

    assert [(item.sku, item.quantity) for item in request.items] == [
        ("SKU-2", 1),
        ("SKU-1", (MAX_ORDER_LINES - 1) * MAX_QUANTITY),
    ]
    assert max(item.quantity for item in request.items) <= MAX_SKU_QUANTITY


def test_an_order_split_over_lines_is_understood_as_the_same_order() -> None:
    split = CreateOrderIn.model_validate({"items": [{"sku": "B", "quantity": 1}, {"sku": "A", "quantity": 2}] * 2})
    whole = CreateOrderIn.model_validate({"items": [{"sku": "A", "quantity": 4}, {"sku": "B", "quantity": 2}]})

    assert mapping.understood_order("c-1", split) == mapping.understood_order("c-1", whole)
