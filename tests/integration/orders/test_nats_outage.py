"""Orders keep being taken while NATS is down; their events wait in the outbox and are published
exactly once when it is back. These tests stop the session's NATS and always start it again."""

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import stamina.instrumentation
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_contracts.orders.v1 import orders_pb2, orders_pb2_grpc
from orderflow_devstack.infra import Infrastructure, ManagedServer
from orderflow_kit.grpc_client import channel
from orders.settings import OrdersSettings
from tests.integration.orders.helpers import (
    event_ids_of,
    next_stream_seq,
    pending_events,
    stream_messages,
)
from tests.support.jetstream import jetstream
from tests.support.polling import eventually
from tests.support.services import serving_orders


@pytest.fixture
def inventory_address(fake_inventory_address: str) -> str:
    return fake_inventory_address


class NatsOutage:
    """Stops NATS on entry; `end()` starts it again, and leaving the block does if nothing did."""

    def __init__(self, server: ManagedServer) -> None:
        self._server = server
        self._over = False

    async def __aenter__(self) -> "NatsOutage":
        await asyncio.to_thread(self._server.stop)
        return self

    async def end(self) -> None:
        if not self._over:
            self._over = True
            await asyncio.to_thread(self._server.start)

    async def __aexit__(self, *_exc_info: object) -> None:
        await self.end()


@pytest.fixture
def nats_outage(infra: Infrastructure) -> NatsOutage:
    if infra.nats is None:
        pytest.skip("NATS comes from ORDERFLOW_NATS_URL: not ours to stop")
    return NatsOutage(infra.nats)


@pytest.fixture
def publish_failures() -> Iterator[list[BaseException]]:
    """Every failure the relay (the one user of stamina here) backs off from, as it happens."""
    failures: list[BaseException] = []

    def record(details: stamina.instrumentation.RetryDetails) -> None:
        failures.append(details.caused_by)

    previous = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([*previous, record])
    yield failures
    stamina.instrumentation.set_on_retry_hooks(previous)


@pytest.fixture
async def first_stream_seq(infra: Infrastructure) -> AsyncIterator[int]:
    async with jetstream(infra.nats_url) as js:
        yield await next_stream_seq(js)


async def place_orders(order_service: Any, count: int) -> list[str]:
    request = orders_pb2.CreateOrderRequest(
        customer_id=f"cust-{uuid.uuid4().hex[:8]}", items=[orders_pb2.OrderItem(sku="MUG-001", quantity=1)]
    )
    return [(await order_service.CreateOrder(request, timeout=10)).order_id for _ in range(count)]


async def published_counts(infra: Infrastructure, first_seq: int, event_ids: list[str]) -> Counter[str]:
    async with jetstream(infra.nats_url) as js:
        messages = await stream_messages(js, first_seq, set(event_ids))
    return Counter(message.headers["ce-id"] for message in messages if message.headers)


async def test_orders_taken_while_nats_is_down_are_published_exactly_once_when_it_is_back(
    infra: Infrastructure,
    nats_outage: NatsOutage,
    order_service: Any,
    orders_engine: AsyncEngine,
    publish_failures: list[BaseException],
    first_stream_seq: int,
) -> None:
    before = await event_ids_of(orders_engine, await place_orders(order_service, 1))
    # Everything before the outage is published: the relay is connected.
    await eventually(lambda: pending_events(orders_engine, before), lambda pending: pending == 0)

    async with nats_outage:
        during = await event_ids_of(orders_engine, await place_orders(order_service, 3))
        assert await pending_events(orders_engine, during) == 3
        await eventually(lambda: len(publish_failures) >= 2)  # the relay tried, and got no ack
        assert await pending_events(orders_engine, during) == 3

    await eventually(lambda: pending_events(orders_engine, during), lambda pending: pending == 0)
    assert await published_counts(infra, first_stream_seq, before + during) == Counter(before + during)


async def test_the_service_starts_and_takes_orders_while_nats_is_down(
    infra: Infrastructure,
    nats_outage: NatsOutage,
    orders_settings: OrdersSettings,
    orders_engine: AsyncEngine,
    first_stream_seq: int,
) -> None:
    async with nats_outage, serving_orders(orders_settings) as address, channel(address) as connection:
        placed = await event_ids_of(orders_engine, await place_orders(orders_pb2_grpc.OrderServiceStub(connection), 2))
        assert await pending_events(orders_engine, placed) == 2

        await nats_outage.end()

        await eventually(lambda: pending_events(orders_engine, placed), lambda pending: pending == 0)

    assert await published_counts(infra, first_stream_seq, placed) == Counter(placed)
