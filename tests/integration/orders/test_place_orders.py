"""PlaceOrders (bidirectional streaming) against the real orders and inventory services and
PostgreSQL: answers in request order with refusals between good requests, an answer before the
next request is even sent, a re-run import that places nothing twice, and a client that cancels
mid-stream without leaving stock reserved for orders that do not exist."""

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_contracts.orders.v1 import orders_pb2
from orders.settings import OrdersSettings
from tests.integration.orders.helpers import available, new_customer
from tests.support.polling import eventually

WITHIN = 20.0


def request(customer: str, quantities: dict[str, int], client_request_id: str) -> orders_pb2.PlaceOrdersRequest:
    items = [orders_pb2.OrderItem(sku=sku, quantity=quantity) for sku, quantity in quantities.items()]
    return orders_pb2.PlaceOrdersRequest(customer_id=customer, items=items, client_request_id=client_request_id)


async def streamed(requests: Iterable[orders_pb2.PlaceOrdersRequest]) -> AsyncIterator[orders_pb2.PlaceOrdersRequest]:
    for message in requests:
        yield message


async def import_all(order_service: Any, requests: list[orders_pb2.PlaceOrdersRequest]) -> list[Any]:
    async with asyncio.timeout(WITHIN):
        return [response async for response in order_service.PlaceOrders(streamed(requests))]


def outcome(response: Any) -> str:
    return "order" if response.WhichOneof("result") == "order" else f"{response.error.code} {response.error.reason}"


async def orders_of(engine: AsyncEngine, customer: str) -> dict[str, str]:
    """client_request_id -> order id of every order the customer has."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT client_request_id, order_id FROM orders WHERE customer_id = :customer"), {"customer": customer}
        )
        return {row.client_request_id: str(row.order_id) for row in rows}


async def test_answers_come_in_request_order_with_each_refusal_between_good_ones(order_service: Any) -> None:
    customer = new_customer()
    requests = [
        request(customer, {"TEST-MUG": 1}, "good-1"),
        request(customer, {"NO-SUCH-SKU": 1}, "unknown-sku"),
        request(customer, {"TEST-LAMP": 2}, "good-2"),
        request(customer, {"TEST-RARE": 2}, "out-of-stock"),  # one in stock at most
        request(customer, {"TEST-MUG": 1}, ""),
        request(customer, {"TEST-MUG": 0}, "bad-quantity"),
        request(customer, {"TEST-MUG": 3, "TEST-LAMP": 1}, "good-3"),
    ]

    responses = await import_all(order_service, requests)

    assert [response.index for response in responses] == list(range(len(requests)))
    assert [response.client_request_id for response in responses] == [r.client_request_id for r in requests]
    assert [outcome(response) for response in responses] == [
        "order",
        "NOT_FOUND UNKNOWN_SKU",
        "order",
        "FAILED_PRECONDITION OUT_OF_STOCK",
        "INVALID_ARGUMENT VALIDATION_FAILED",
        "INVALID_ARGUMENT VALIDATION_FAILED",
        "order",
    ]
    assert responses[1].error.metadata["skus"] == "NO-SUCH-SKU"
    assert responses[4].error.metadata["field"] == "client_request_id"
    assert responses[5].error.metadata["field"] == "items[0].quantity"
    placed = [response.order for response in responses if response.WhichOneof("result") == "order"]
    assert [{line.sku: line.quantity for line in order.items} for order in placed] == [
        {"TEST-MUG": 1},
        {"TEST-LAMP": 2},
        {"TEST-LAMP": 1, "TEST-MUG": 3},
    ]
    assert all(order.customer_id == customer for order in placed)


async def test_each_answer_comes_while_later_requests_are_still_to_be_sent(order_service: Any) -> None:
    customer = new_customer()
    call = order_service.PlaceOrders()
    answers = []
    async with asyncio.timeout(WITHIN):
        for number in range(3):
            await call.write(request(customer, {"TEST-MUG": 1}, f"interactive-{number}"))
            answers.append(await call.read())  # before the next request exists
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF  # type: ignore[attr-defined]
    assert [(answer.index, outcome(answer)) for answer in answers] == [(0, "order"), (1, "order"), (2, "order")]
    assert await call.code() == grpc.StatusCode.OK


async def test_running_an_import_again_answers_the_same_orders_and_places_none_twice(
    order_service: Any, inventory: Any, orders_engine: AsyncEngine
) -> None:
    customer = new_customer()
    requests = [request(customer, {"TEST-MUG": 2}, f"line-{number}") for number in range(12)]
    requests.insert(5, request(customer, {"NO-SUCH-SKU": 1}, "line-refused"))
    mugs_before = await available(inventory, "TEST-MUG")

    first = await import_all(order_service, requests)
    again = await import_all(order_service, requests)

    assert [outcome(response) for response in again] == [outcome(response) for response in first]
    assert [response.order.order_id for response in again] == [response.order.order_id for response in first]
    stored = await orders_of(orders_engine, customer)
    assert len(stored) == 12
    assert sorted(stored.values()) == sorted(response.order.order_id for response in first if response.order.order_id)
    assert await available(inventory, "TEST-MUG") == mugs_before - 2 * 12


async def test_a_client_that_cancels_mid_stream_leaves_no_stock_held_and_a_rerun_completes_the_import(
    order_service: Any, inventory: Any, orders_engine: AsyncEngine, orders_settings: OrdersSettings
) -> None:
    customer = new_customer()
    requests = [request(customer, {"TEST-LAMP": 1}, f"cancelled-{number}") for number in range(40)]
    lamps_before = await available(inventory, "TEST-LAMP")

    call = order_service.PlaceOrders(streamed(requests))
    async with asyncio.timeout(WITHIN):
        answered = [await call.read() for _ in range(3)]
    call.cancel()

    assert [outcome(answer) for answer in answered] == ["order"] * 3

    # Placements the server had started finish (or release their stock); none is left half-done:
    # every unit gone from the shelf is in a recorded order.
    async def units_unaccounted_for() -> int:
        taken = lamps_before - await available(inventory, "TEST-LAMP")
        return taken - len(await orders_of(orders_engine, customer))

    await eventually(units_unaccounted_for, lambda units: units == 0, what="stock taken only for recorded orders")
    placed_before_the_rerun = await orders_of(orders_engine, customer)
    assert 3 <= len(placed_before_the_rerun) < len(requests)

    # A request the cancelled stream had claimed may stay claimed until its placement lease ends:
    # the re-run is answered CLIENT_REQUEST_IN_FLIGHT for it, and is run again, as a client does.
    rerun = await eventually(
        lambda: import_all(order_service, requests),
        lambda answers: all(outcome(answer) != "ABORTED CLIENT_REQUEST_IN_FLIGHT" for answer in answers),
        within=orders_settings.placement_lease_seconds + WITHIN,
        what="a re-run with no placement of the cancelled stream still in flight",
    )

    assert [outcome(answer) for answer in rerun] == ["order"] * len(requests)
    stored = await orders_of(orders_engine, customer)
    assert len(stored) == len(requests)
    assert all(stored[request_id] == order_id for request_id, order_id in placed_before_the_rerun.items())
    assert {answer.client_request_id: answer.order.order_id for answer in rerun} == stored
    assert await available(inventory, "TEST-LAMP") == lamps_before - len(requests)


async def test_an_unreadable_message_fails_the_stream_as_invalid_argument(orders_address: str) -> None:
    """A message that is not a PlaceOrdersRequest: the stream's own error, not one request's."""
    async with grpc.aio.insecure_channel(orders_address) as connection:
        raw = connection.stream_stream(
            "/orderflow.orders.v1.OrderService/PlaceOrders",
            request_serializer=lambda message: message,
            response_deserializer=lambda message: message,
        )
        call = raw(streamed_bytes([b"\xff\xff\xff"]))
        async with asyncio.timeout(WITHIN):
            code = await call.code()
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def streamed_bytes(messages: list[bytes]) -> AsyncIterator[bytes]:
    for message in messages:
        yield message
