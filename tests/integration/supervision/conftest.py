"""The three gRPC services in-process (their real wiring), each with a database and an OrderCreated
consumer of its own, for tests that take a shared server away and watch them report it and recover."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial

import pytest
import pytest_asyncio

import inventory.main
import loyalty.main
import orders.main
from inventory.settings import InventoryConsumer, InventorySettings
from loyalty.settings import LoyaltyConsumer, LoyaltySettings
from orderflow_devstack.infra import Infrastructure, ManagedServer, free_port
from orders.settings import OrdersSettings
from tests.support.databases import fresh_database
from tests.support.jetstream import consumer_exists, delete_consumer, jetstream, new_consumer_name
from tests.support.polling import eventually
from tests.support.services import serving_inventory, serving_loyalty, serving_orders, session_settings


@dataclass(frozen=True)
class Databases:
    inventory: str
    orders: str
    loyalty: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def databases(infra: Infrastructure) -> AsyncIterator[Databases]:
    """One set per test module: making and dropping databases is what costs time here, and tests
    use fresh customers, so they never see each other's rows."""
    async with (
        fresh_database(infra.postgres_url, "supervision_inventory", inventory.main.MIGRATIONS) as inventory_database,
        fresh_database(infra.postgres_url, "supervision_orders", orders.main.MIGRATIONS) as orders_database,
        fresh_database(infra.postgres_url, "supervision_loyalty", loyalty.main.MIGRATIONS) as loyalty_database,
    ):
        yield Databases(inventory_database, orders_database, loyalty_database)


@dataclass(frozen=True)
class Backends:
    """Where the in-process services listen."""

    inventory: str
    orders: str
    loyalty: str


@pytest.fixture
async def backends(infra: Infrastructure, databases: Databases) -> AsyncIterator[Backends]:
    """Inventory, orders and loyalty until the test ends, their consumers in place (they only see
    events published after that); short retry pauses so they catch up fast."""
    common = session_settings(infra)
    async with AsyncExitStack() as stack:
        inventory_settings = InventorySettings(
            **common,
            inventory_database=databases.inventory,
            inventory_port=free_port(),
            order_events=InventoryConsumer(consumer=new_consumer_name("inventory-supervision"), deliver_policy="new"),
        )
        loyalty_settings = LoyaltySettings(
            **common,
            loyalty_database=databases.loyalty,
            loyalty_port=free_port(),
            order_events=LoyaltyConsumer(
                consumer=new_consumer_name("loyalty-supervision"),
                deliver_policy="new",
                retry_base_seconds=0.1,
                retry_max_seconds=0.5,
            ),
        )
        for consumer in (inventory_settings.order_events.consumer, loyalty_settings.order_events.consumer):
            stack.push_async_callback(delete_consumer, infra.nats_url, consumer)
        inventory_address = await stack.enter_async_context(serving_inventory(inventory_settings))
        orders_settings = OrdersSettings(
            **common,
            orders_database=databases.orders,
            orders_port=free_port(),
            inventory_addr=inventory_address,
            outbox_poll_seconds=0.2,
            outbox_retry_max_seconds=0.5,
        )
        orders_address = await stack.enter_async_context(serving_orders(orders_settings))
        loyalty_address = await stack.enter_async_context(serving_loyalty(loyalty_settings))
        js = await stack.enter_async_context(jetstream(infra.nats_url))
        for consumer in (inventory_settings.order_events.consumer, loyalty_settings.order_events.consumer):
            await eventually(partial(consumer_exists, js, consumer), what=f"consumer {consumer}")
        yield Backends(inventory_address, orders_address, loyalty_address)


@asynccontextmanager
async def stopped(server: ManagedServer | None, name: str) -> AsyncIterator[None]:
    """`server` is down for the block and started again (same port, same data) however it ends.
    The session shares it, so it is up again before the next test."""
    if server is None:
        pytest.skip(f"{name} comes from the environment: not ours to stop")
    await asyncio.to_thread(server.stop)
    try:
        yield
    finally:
        await asyncio.to_thread(server.start)
