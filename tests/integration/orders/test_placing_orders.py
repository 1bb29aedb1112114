"""Placing orders against the REAL inventory service and PostgreSQL: what commits together, and
what happens to a reservation when the order cannot be written."""

import uuid
from typing import Any

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_contracts.cloudevents import CloudEvent
from orderflow_contracts.events import OrderCreatedV1
from orderflow_contracts.orders.v1 import orders_pb2, orders_pb2_grpc
from orderflow_contracts.streams import ORDER_CREATED_SUBJECT
from orderflow_devstack.infra import free_port
from orderflow_kit.db import create_engine
from orderflow_kit.errors import ErrorKind, ServiceError
from orderflow_kit.grpc_client import ErrorDetail, channel
from orderflow_kit.request_context import new_traceparent
from orders.inventory_client import InventoryClient
from orders.models import OutboxEvent
from orders.placing_orders import Orders, RequestedItem
from orders.settings import OrdersSettings
from tests.integration.orders.helpers import available, count_rows, create_request, new_customer
from tests.support.polling import eventually
from tests.support.rpc_errors import rpc_error
from tests.support.services import serving_orders


async def order_count(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        return {
            table: int(await connection.scalar(text(f"SELECT count(*) FROM {table}")) or 0)
            for table in ("orders", "order_lines", "outbox")
        }


async def test_the_order_its_lines_and_its_event_commit_together(
    order_service: Any, inventory: Any, orders_engine: AsyncEngine
) -> None:
    customer = new_customer()
    mugs_before, lamps_before = await available(inventory, "TEST-MUG"), await available(inventory, "TEST-LAMP")
    request_id, traceparent = uuid.uuid4().hex, new_traceparent()

    order = await order_service.CreateOrder(
        create_request(customer, {"TEST-MUG": 2, "TEST-LAMP": 1}),
        metadata=(("x-request-id", request_id), ("traceparent", traceparent)),
        timeout=10,
    )

    assert order.status == orders_pb2.ORDER_STATUS_CREATED
    assert order.customer_id == customer
    assert [(line.sku, line.quantity, line.unit_price_cents) for line in order.items] == [
        ("TEST-LAMP", 1, 5490),
        ("TEST-MUG", 2, 1290),
    ]
    assert (order.total_cents, order.currency) == (2 * 1290 + 5490, "EUR")
    assert await count_rows(orders_engine, order.order_id) == {"orders": 1, "order_lines": 2, "outbox": 1}
    assert (await available(inventory, "TEST-MUG"), await available(inventory, "TEST-LAMP")) == (
        mugs_before - 2,
        lamps_before - 1,
    )

    async with orders_engine.connect() as connection:
        row = (
            await connection.execute(text("SELECT * FROM outbox WHERE aggregate_id = :id"), {"id": order.order_id})
        ).one()
    stored = OutboxEvent.model_validate(row._mapping)
    event = CloudEvent.from_message(stored.headers, stored.payload)
    assert stored.subject == ORDER_CREATED_SUBJECT
    assert stored.headers["Nats-Msg-Id"] == event.id == str(stored.id)
    assert (event.type, event.source, event.subject) == (OrderCreatedV1.TYPE, "orderflow/orders", order.order_id)
    assert event.extensions == {"traceparent": traceparent, "ce-requestid": request_id}
    assert event.time == order.created_at.ToDatetime(tzinfo=event.time.tzinfo)
    payload = OrderCreatedV1.model_validate_json(event.data)
    assert (str(payload.order_id), payload.customer_id, payload.total_cents, payload.currency) == (
        order.order_id,
        customer,
        order.total_cents,
        "EUR",
    )
    assert [(line.sku, line.quantity, line.unit_price_cents) for line in payload.items] == [
        (line.sku, line.quantity, line.unit_price_cents) for line in order.items
    ]


async def test_get_order_returns_the_order_as_created(order_service: Any) -> None:
    created = await order_service.CreateOrder(create_request(new_customer(), {"TEST-MUG": 1}), timeout=10)

    fetched = await order_service.GetOrder(orders_pb2.GetOrderRequest(order_id=created.order_id))

    assert fetched == created


async def test_get_order_of_an_unknown_or_malformed_id_is_not_found_or_invalid(order_service: Any) -> None:
    missing = str(uuid.uuid4())

    unknown = await rpc_error(order_service.GetOrder(orders_pb2.GetOrderRequest(order_id=missing)))
    malformed = await rpc_error(order_service.GetOrder(orders_pb2.GetOrderRequest(order_id="order-1")))

    assert (unknown.code, unknown.detail) == (
        grpc.StatusCode.NOT_FOUND,
        ErrorDetail("ORDER_NOT_FOUND", {"order_id": missing}),
    )
    assert (malformed.code, malformed.detail) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ErrorDetail("VALIDATION_FAILED", {"field": "order_id"}),
    )


async def test_inventory_refusals_reach_the_caller_unchanged_and_nothing_is_written(
    order_service: Any, inventory: Any, orders_engine: AsyncEngine
) -> None:
    rare_before = await available(inventory, "TEST-RARE")

    unknown = await rpc_error(order_service.CreateOrder(create_request(new_customer(), {"NO-SUCH-SKU": 1})))
    short = await rpc_error(order_service.CreateOrder(create_request(new_customer(), {"TEST-RARE": rare_before + 1})))

    assert (unknown.code, unknown.detail) == (
        grpc.StatusCode.NOT_FOUND,
        ErrorDetail("UNKNOWN_SKU", {"skus": "NO-SUCH-SKU"}),
    )
    assert (short.code, short.detail) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        ErrorDetail("OUT_OF_STOCK", {"skus": "TEST-RARE"}),
    )
    assert await order_count(orders_engine) == {"orders": 0, "order_lines": 0, "outbox": 0}
    assert await available(inventory, "TEST-RARE") == rare_before


async def test_a_write_failing_after_the_reservation_releases_it_and_writes_nothing(
    order_service: Any, inventory: Any, orders_engine: AsyncEngine
) -> None:
    """The outbox insert fails after the order row went in: the whole transaction rolls back."""
    async with orders_engine.begin() as connection:
        await connection.execute(
            text(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'the outbox refuses writes'; END $$"
            )
        )
        await connection.execute(
            text("CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION refuse()")
        )
    mugs_before = await available(inventory, "TEST-MUG")

    refused = await rpc_error(order_service.CreateOrder(create_request(new_customer(), {"TEST-MUG": 3}), timeout=10))

    assert (refused.code, refused.detail) == (grpc.StatusCode.UNAVAILABLE, ErrorDetail("ORDERS_STORE_UNAVAILABLE", {}))
    assert await order_count(orders_engine) == {"orders": 0, "order_lines": 0, "outbox": 0}
    await eventually(lambda: available(inventory, "TEST-MUG"), lambda mugs: mugs == mugs_before)


async def test_an_unreachable_database_after_the_reservation_releases_it(
    inventory_address: str, inventory: Any
) -> None:
    unreachable = create_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", "orders")
    mugs_before = await available(inventory, "TEST-MUG")
    async with channel(inventory_address) as connection:
        orders = Orders(unreachable, InventoryClient(connection), inventory_timeout=5.0)

        with pytest.raises(ServiceError) as refused:
            await orders.place(new_customer(), [RequestedItem("TEST-MUG", 4)], caller_time_remaining=None)
        await orders.finish_unfinished_work(within=10.0)
    await unreachable.dispose()

    assert (refused.value.kind, refused.value.code) == (ErrorKind.UNAVAILABLE, "ORDERS_STORE_UNAVAILABLE")
    assert await available(inventory, "TEST-MUG") == mugs_before


async def test_an_unreachable_inventory_is_unavailable_and_nothing_is_written(
    orders_settings: OrdersSettings, orders_engine: AsyncEngine
) -> None:
    closed_port = orders_settings.model_copy(update={"inventory_addr": f"127.0.0.1:{free_port()}"})

    async with serving_orders(closed_port) as address, channel(address) as connection:
        refused = await rpc_error(
            orders_pb2_grpc.OrderServiceStub(connection).CreateOrder(
                create_request(new_customer(), {"TEST-MUG": 1}), timeout=10
            )
        )

    assert (refused.code, refused.detail) == (grpc.StatusCode.UNAVAILABLE, ErrorDetail("INVENTORY_UNAVAILABLE", {}))
    assert await order_count(orders_engine) == {"orders": 0, "order_lines": 0, "outbox": 0}
