"""Hostile requests to every method of the three gRPC services (the real ones, in-process, on
databases of their own): a client's mistake is refused with INVALID_ARGUMENT, NOT_FOUND or
FAILED_PRECONDITION (ALREADY_EXISTS where the contract says so) and an ErrorInfo code, never
with UNKNOWN or INTERNAL; a request that happens to be valid succeeds."""

import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

import grpc
import pytest
import pytest_asyncio
from hypothesis import example, given
from hypothesis import strategies as st

import inventory.main
import loyalty.main
import orders.main
from inventory.settings import InventoryConsumer, InventorySettings
from loyalty.settings import LoyaltyConsumer, LoyaltySettings
from orderflow_contracts.identifiers import (
    MAX_ORDER_LINES,
    MAX_QUANTITY,
    MAX_RESTOCK_LINES,
    MAX_RESTOCK_UNITS,
    PAGE_TOKEN_PATTERN,
)
from orderflow_contracts.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from orderflow_contracts.loyalty.v1 import loyalty_pb2, loyalty_pb2_grpc
from orderflow_contracts.orders.v1 import orders_pb2, orders_pb2_grpc
from orderflow_devstack.infra import Infrastructure, free_port
from orderflow_kit.grpc_client import error_detail
from orders.settings import OrdersSettings
from tests.hostile.strategies import (
    HOSTILE_EXAMPLES,
    client_request_ids,
    customer_ids,
    hostile_int32,
    hostile_int64,
    hostile_text,
    odd_order_ids,
    order_ids,
    repeated,
    skus,
)
from tests.support.databases import fresh_database
from tests.support.jetstream import delete_consumer
from tests.support.services import serving_inventory, serving_loyalty, serving_orders, session_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

Code = grpc.StatusCode


class _Line(Protocol):
    """A line of an order as inventory's and orders' messages both have it (StockLine, OrderItem)."""

    sku: str
    quantity: int


Line = TypeVar("Line", bound=_Line)

INVENTORY = inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"]
ORDERS = orders_pb2.DESCRIPTOR.services_by_name["OrderService"]
LOYALTY = loyalty_pb2.DESCRIPTOR.services_by_name["LoyaltyService"]

IN_STOCK = [
    {"sku": "HOSTILE-MUG", "name": "Plenty", "price_cents": 1250, "stock": 1_000_000_000},
    {"sku": "HOSTILE-RARE", "name": "Nearly gone", "price_cents": 99_900, "stock": 1},
]
CATALOG_SKUS = st.sampled_from([str(product["sku"]) for product in IN_STOCK])
# MAX_ORDER_LINES SKUs of the longest allowed shape, unknown or out of stock: a refusal naming them
# all would not fit in gRPC's trailing metadata.
LONGEST_UNKNOWN_SKUS = [f"{'Z' * 60}{index:04d}" for index in range(MAX_ORDER_LINES)]
LONGEST_SOLD_OUT_SKUS = [f"{'S' * 60}{index:04d}" for index in range(MAX_ORDER_LINES)]
CATALOG = [
    *IN_STOCK,
    *({"sku": sku, "name": "Sold out", "price_cents": 100, "stock": 0} for sku in LONGEST_SOLD_OUT_SKUS),
]


@dataclass(frozen=True)
class Services:
    inventory: Any  # the generated stubs are untyped
    orders: Any
    loyalty: Any
    # By full service name, for calls with raw bytes.
    channels: Mapping[str, grpc.aio.Channel]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def services(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Services]:
    """Inventory, orders (calling that inventory) and loyalty, each on a fresh database, once per module."""
    catalog = tmp_path_factory.mktemp("hostile-grpc") / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    common = session_settings(infra)
    async with AsyncExitStack() as stack:

        async def database(prefix: str, migrations: Path) -> str:
            return await stack.enter_async_context(fresh_database(infra.postgres_url, prefix, migrations))

        async def serve(serving: AbstractAsyncContextManager[str]) -> Any:
            """A plain channel to the service (no retries that could hide an answer), closed at the end."""
            address = await stack.enter_async_context(serving)
            return await stack.enter_async_context(grpc.aio.insecure_channel(address))

        inventory_database = await database("inventory", inventory.main.MIGRATIONS)
        inventory_port = free_port()
        # A durable consumer of its own that sees only new events, not every test's orders so far.
        inventory_consumer = f"inventory-hostile-{uuid.uuid4().hex[:10]}"
        stack.push_async_callback(delete_consumer, infra.nats_url, inventory_consumer)
        inventory_channel = await serve(
            serving_inventory(
                InventorySettings(
                    **common,
                    inventory_database=inventory_database,
                    inventory_port=inventory_port,
                    catalog=catalog,
                    order_events=InventoryConsumer(consumer=inventory_consumer, deliver_policy="new"),
                )
            )
        )
        orders_channel = await serve(
            serving_orders(
                OrdersSettings(
                    **common,
                    orders_database=await database("orders", orders.main.MIGRATIONS),
                    orders_port=free_port(),
                    inventory_addr=f"127.0.0.1:{inventory_port}",
                )
            )
        )
        consumer = f"loyalty-hostile-{uuid.uuid4().hex[:10]}"
        stack.push_async_callback(delete_consumer, infra.nats_url, consumer)
        loyalty_channel = await serve(
            serving_loyalty(
                LoyaltySettings(
                    **common,
                    loyalty_database=await database("loyalty", loyalty.main.MIGRATIONS),
                    loyalty_port=free_port(),
                    order_events=LoyaltyConsumer(consumer=consumer, deliver_policy="new"),
                )
            )
        )
        yield Services(
            inventory_pb2_grpc.InventoryServiceStub(inventory_channel),
            orders_pb2_grpc.OrderServiceStub(orders_channel),
            loyalty_pb2_grpc.LoyaltyServiceStub(loyalty_channel),
            {
                INVENTORY.full_name: inventory_channel,
                ORDERS.full_name: orders_channel,
                LOYALTY.full_name: loyalty_channel,
            },
        )


async def answer(call: Awaitable[object], allowed: Collection[Code]) -> Code:
    """Await `call`; fail unless it succeeded or was refused with an `allowed` status and an
    ErrorInfo code (every refusal of ours names its reason)."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        refusal = error
    else:
        return Code.OK
    code, message = refusal.code(), refusal.details() or ""
    assert code in allowed, f"{code.name}: {message[:300]!r}"
    assert error_detail(refusal).code, f"{code.name} without an ErrorInfo code: {message[:300]!r}"
    return code


# Each method gets hostile values in one field at a time, the others valid: a mistake in one field
# must not hide behind a refusal of another. Known edges are explicit examples.


def valid_lines(line: Callable[..., Line]) -> st.SearchStrategy[list[Line]]:
    """One or two lines of an order, of SKUs in stock."""
    return st.lists(
        st.builds(line, sku=CATALOG_SKUS, quantity=st.integers(min_value=1, max_value=MAX_QUANTITY)),
        min_size=1,
        max_size=2,
        unique_by=lambda built: built.sku,
    )


def hostile_lines(line: Callable[..., Line]) -> st.SearchStrategy[list[Line]]:
    """Lines of an order with a hostile SKU or quantity, or more lines than an order may have."""
    return repeated(
        st.builds(line, sku=hostile_text(skus, CATALOG_SKUS), quantity=hostile_int32),
        st.builds(line, sku=st.one_of(skus, CATALOG_SKUS), quantity=hostile_int32),
        huge=st.integers(min_value=MAX_ORDER_LINES + 1, max_value=5_000).map(
            lambda n: [line(sku=f"SKU-{index}", quantity=1) for index in range(n)]
        ),
    )


# --- inventory --------------------------------------------------------------------------------

valid_stock_lines = valid_lines(inventory_pb2.StockLine)
hostile_stock_lines = hostile_lines(inventory_pb2.StockLine)


@given(sku=hostile_text(skus, CATALOG_SKUS))
@HOSTILE_EXAMPLES
async def test_get_product_answers_a_hostile_sku_with_a_client_error(services: Services, sku: str) -> None:
    request = inventory_pb2.GetProductRequest(sku=sku)
    await answer(services.inventory.GetProduct(request), {Code.INVALID_ARGUMENT, Code.NOT_FOUND})


async def test_list_products_succeeds(services: Services) -> None:
    await answer(services.inventory.ListProducts(inventory_pb2.ListProductsRequest()), set())


RESERVE_REFUSALS = {Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.FAILED_PRECONDITION, Code.ALREADY_EXISTS}


# By the field that is hostile, the others valid.
reserve_requests = {
    "order_id": st.builds(
        inventory_pb2.ReserveStockRequest, order_id=hostile_text(order_ids, odd_order_ids), items=valid_stock_lines
    ),
    "items": st.builds(inventory_pb2.ReserveStockRequest, order_id=order_ids, items=hostile_stock_lines),
}


@given(order_id=hostile_text(order_ids, odd_order_ids))
@HOSTILE_EXAMPLES
async def test_release_stock_answers_a_hostile_order_id_with_a_client_error(services: Services, order_id: str) -> None:
    request = inventory_pb2.ReleaseStockRequest(order_id=order_id)
    await answer(services.inventory.ReleaseStock(request), {Code.INVALID_ARGUMENT})


RESTOCK_REFUSALS = {Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.FAILED_PRECONDITION}
restock_quantities = st.integers(min_value=1, max_value=MAX_RESTOCK_UNITS)
hostile_restock_lines = repeated(
    st.builds(inventory_pb2.RestockRequest, sku=hostile_text(skus, CATALOG_SKUS), quantity=hostile_int32),
    st.builds(inventory_pb2.RestockRequest, sku=st.one_of(skus, CATALOG_SKUS), quantity=hostile_int32),
    huge=st.integers(min_value=MAX_RESTOCK_LINES + 1, max_value=MAX_RESTOCK_LINES + 20).map(
        lambda n: [inventory_pb2.RestockRequest(sku="HOSTILE-MUG", quantity=1) for _ in range(n)]
    ),
)
names = st.text(alphabet=st.characters(categories=["L", "N", "P", "Zs"]), min_size=1, max_size=200)
hostile_product_details = st.tuples(
    st.one_of(st.none(), hostile_text(names)),
    st.one_of(st.none(), st.integers(min_value=0, max_value=100_000), hostile_int64),
)


@given(lines=hostile_restock_lines)
@HOSTILE_EXAMPLES
async def test_restock_stream_answers_hostile_lines_with_a_client_error(
    services: Services, lines: list[inventory_pb2.RestockRequest]
) -> None:
    await answer(services.inventory.RestockStream(iter(lines), timeout=30), RESTOCK_REFUSALS)


@given(sku=st.one_of(skus, CATALOG_SKUS), quantity=restock_quantities, details=hostile_product_details)
@HOSTILE_EXAMPLES
async def test_restock_stream_answers_a_hostile_name_or_price_with_a_client_error(
    services: Services, sku: str, quantity: int, details: tuple[str | None, int | None]
) -> None:
    name, price_cents = details
    line = inventory_pb2.RestockRequest(sku=sku, quantity=quantity, name=name, price_cents=price_cents)
    await answer(services.inventory.RestockStream(iter([line]), timeout=10), RESTOCK_REFUSALS)


# --- orders -----------------------------------------------------------------------------------

valid_order_items = valid_lines(orders_pb2.OrderItem)
hostile_order_items = hostile_lines(orders_pb2.OrderItem)
CREATE_REFUSALS = {Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.FAILED_PRECONDITION}


# By the field that is hostile, the others valid.
create_requests = {
    "customer_id": st.builds(
        orders_pb2.CreateOrderRequest, customer_id=hostile_text(customer_ids), items=valid_order_items
    ),
    "items": st.builds(orders_pb2.CreateOrderRequest, customer_id=customer_ids, items=hostile_order_items),
    "client_request_id": st.builds(
        orders_pb2.CreateOrderRequest,
        customer_id=st.just("hostile-customer"),
        items=valid_order_items,
        client_request_id=hostile_text(client_request_ids),
    ),
}


# --- one hostile field of several (ReserveStock's and CreateOrder's) ---------------------------


class HostileFields(NamedTuple):
    """A method's requests by the field that is hostile, how one is sent, and the refusals allowed."""

    requests: Mapping[str, st.SearchStrategy[Any]]
    send: Callable[[Services, Any], Awaitable[object]]
    refusals: Collection[Code]


HOSTILE_FIELDS = {
    "ReserveStock": HostileFields(
        reserve_requests, lambda services, request: services.inventory.ReserveStock(request), RESERVE_REFUSALS
    ),
    "CreateOrder": HostileFields(
        create_requests, lambda services, request: services.orders.CreateOrder(request, timeout=10), CREATE_REFUSALS
    ),
}


@pytest.mark.parametrize(
    ("method", "hostile"), [(method, field) for method, fields in HOSTILE_FIELDS.items() for field in fields.requests]
)
@given(data=st.data())
@HOSTILE_EXAMPLES
async def test_a_hostile_field_is_a_client_error(
    services: Services, method: str, hostile: str, data: st.DataObject
) -> None:
    requests, send, refusals = HOSTILE_FIELDS[method]
    await answer(send(services, data.draw(requests[hostile])), refusals)


@given(order_id=hostile_text(order_ids, odd_order_ids))
@HOSTILE_EXAMPLES
async def test_get_order_answers_a_hostile_order_id_with_a_client_error(services: Services, order_id: str) -> None:
    request = orders_pb2.GetOrderRequest(order_id=order_id)
    await answer(services.orders.GetOrder(request), {Code.INVALID_ARGUMENT, Code.NOT_FOUND})


@given(
    customer_id=hostile_text(customer_ids),
    page_size=st.one_of(st.integers(min_value=0, max_value=100), hostile_int32),
)
@HOSTILE_EXAMPLES
async def test_list_orders_answers_a_hostile_customer_id_or_page_size_with_invalid_argument(
    services: Services, customer_id: str, page_size: int
) -> None:
    request = orders_pb2.ListOrdersRequest(customer_id=customer_id, page_size=page_size)
    await answer(services.orders.ListOrders(request), {Code.INVALID_ARGUMENT})


# Tokens near the documented shape (orderflow_contracts.identifiers.PAGE_TOKEN_PATTERN): every
# string of that shape is a cursor, anything else a refusal.
shaped_page_tokens = st.from_regex(PAGE_TOKEN_PATTERN, fullmatch=True)
page_tokens = st.one_of(
    hostile_text(),
    shaped_page_tokens,
    shaped_page_tokens.map(lambda token: "0" + token),
    shaped_page_tokens.map(str.upper),
    st.tuples(shaped_page_tokens, hostile_text()).map("".join),
    st.just("WyIyMDI2LTExLTIxVDAwOjAwOjAwKzAwOjAwIiwgMV0"),  # the earlier base64-of-JSON kind
)


@given(page_token=page_tokens)
@example(page_token=f"{10**16 - 1}.{uuid.UUID(int=2**128 - 1)}")
@example(page_token=f"0.{uuid.UUID(int=0)}")
@example(page_token=f"{10**16}.{uuid.UUID(int=1)}")
@HOSTILE_EXAMPLES
async def test_list_orders_answers_a_page_token_of_the_documented_shape_and_refuses_any_other(
    services: Services, page_token: str
) -> None:
    request = orders_pb2.ListOrdersRequest(customer_id="hostile-customer", page_size=5, page_token=page_token)
    answered = await answer(services.orders.ListOrders(request), {Code.INVALID_ARGUMENT})
    # An empty token is none: the first page.
    assert (answered == Code.OK) == (page_token == "" or re.fullmatch(PAGE_TOKEN_PATTERN, page_token) is not None)


# --- loyalty ----------------------------------------------------------------------------------


@given(customer_id=hostile_text(customer_ids))
@HOSTILE_EXAMPLES
async def test_get_balance_answers_a_hostile_customer_id_with_invalid_argument(
    services: Services, customer_id: str
) -> None:
    request = loyalty_pb2.GetBalanceRequest(customer_id=customer_id)
    await answer(services.loyalty.GetBalance(request), {Code.INVALID_ARGUMENT})


# --- the largest refusals ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("skus", "refusal"),
    [(LONGEST_UNKNOWN_SKUS, Code.NOT_FOUND), (LONGEST_SOLD_OUT_SKUS, Code.FAILED_PRECONDITION)],
    ids=["unknown", "sold out"],
)
async def test_the_largest_refusal_reaches_the_client(services: Services, skus: list[str], refusal: Code) -> None:
    stock_lines = [inventory_pb2.StockLine(sku=sku, quantity=1) for sku in skus]
    reserve = inventory_pb2.ReserveStockRequest(order_id=str(uuid.uuid4()), items=stock_lines)
    create = orders_pb2.CreateOrderRequest(
        customer_id="hostile-customer", items=[orders_pb2.OrderItem(sku=sku, quantity=1) for sku in skus]
    )

    assert await answer(services.inventory.ReserveStock(reserve), {refusal}) == refusal
    assert await answer(services.orders.CreateOrder(create, timeout=10), {refusal}) == refusal


# --- bytes that are no request message ------------------------------------------------------

EVERY_METHOD = [
    (service.full_name, method.name) for service in (INVENTORY, ORDERS, LOYALTY) for method in service.methods
]
CLIENT_STREAMING = {
    (service.full_name, method.name): method.client_streaming
    for service in (INVENTORY, ORDERS, LOYALTY)
    for method in service.methods
}
SERVER_STREAMING = {
    (service.full_name, method.name): method.server_streaming
    for service in (INVENTORY, ORDERS, LOYALTY)
    for method in service.methods
}
ANY_CLIENT_ERROR = {Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.FAILED_PRECONDITION, Code.ALREADY_EXISTS}

undecodable = st.one_of(
    st.binary(min_size=1, max_size=200),
    # Field 1 (a string in every request here) holding bytes that are not UTF-8 (0xff never is).
    st.binary(max_size=100).map(lambda text: b"\x0a" + bytes([len(text) + 1]) + text + b"\xff"),
)


@pytest.mark.parametrize(("service", "method"), EVERY_METHOD)
@given(raw=undecodable)
@HOSTILE_EXAMPLES
async def test_bytes_that_are_no_request_message_are_a_client_error(
    services: Services, service: str, method: str, raw: bytes
) -> None:
    path, connection = f"/{service}/{method}", services.channels[service]
    if (service, method) == (ORDERS.full_name, "PlaceOrders"):  # bidirectional
        both = connection.stream_stream(path, request_serializer=bytes, response_deserializer=bytes)
        valid = orders_pb2.PlaceOrdersRequest(
            customer_id="hostile-importer",
            items=[orders_pb2.OrderItem(sku="HOSTILE-MUG", quantity=1)],
            client_request_id="hostile-import",
        ).SerializeToString()
        await answer(_every_response(both(iter([valid, raw]), timeout=10)), ANY_CLIENT_ERROR)
    elif SERVER_STREAMING[service, method]:
        # The refusal comes before the first response; bytes that happen to decode start a watch.
        watch = connection.unary_stream(path, request_serializer=bytes, response_deserializer=bytes)
        watching = watch(raw, timeout=10)
        await answer(watching.read(), ANY_CLIENT_ERROR)
        watching.cancel()
    elif CLIENT_STREAMING[service, method]:
        # The undecodable message after a valid one: each message of a stream is checked.
        stream = connection.stream_unary(path, request_serializer=bytes, response_deserializer=bytes)
        valid = inventory_pb2.RestockRequest(sku="HOSTILE-MUG", quantity=1).SerializeToString()
        await answer(stream(iter([valid, raw]), timeout=10), ANY_CLIENT_ERROR)
    else:
        call = connection.unary_unary(path, request_serializer=bytes, response_deserializer=bytes)
        await answer(call(raw, timeout=10), ANY_CLIENT_ERROR)


async def _every_response(call: Any) -> None:
    async for _ in call:
        pass
