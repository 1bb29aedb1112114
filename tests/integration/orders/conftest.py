from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

import orders.main
from inventory.main import MIGRATIONS as INVENTORY_MIGRATIONS
from inventory.settings import InventoryConsumer, InventorySettings
from orderflow_contracts.inventory.v1 import inventory_pb2_grpc
from orderflow_contracts.orders.v1 import orders_pb2_grpc
from orderflow_devstack.infra import Infrastructure, free_port
from orderflow_kit.grpc_client import channel
from orders.settings import OrdersSettings
from tests.integration.orders.helpers import FakeInventory, write_catalog
from tests.support.databases import database_engine, fresh_database
from tests.support.grpc_servers import serving_servicer
from tests.support.jetstream import delete_consumer, new_consumer_name
from tests.support.services import serving_inventory, serving_orders, session_settings


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def inventory_database(infra: Infrastructure) -> AsyncIterator[str]:
    """The real inventory's database, one per test module (tests only look at stock deltas)."""
    async with fresh_database(infra.postgres_url, "inventory", INVENTORY_MIGRATIONS) as name:
        yield name


@pytest.fixture
async def inventory_address(infra: Infrastructure, inventory_database: str, tmp_path: Path) -> AsyncIterator[str]:
    """The REAL inventory service, in-process. Modules testing failures override this with a fake."""
    settings = InventorySettings(
        **session_settings(infra),
        inventory_database=inventory_database,
        inventory_port=free_port(),
        catalog=write_catalog(tmp_path / "catalog.json"),
        order_events=InventoryConsumer(consumer=new_consumer_name("inventory"), deliver_policy="new"),
    )
    async with serving_inventory(settings) as address:
        yield address
    await delete_consumer(infra.nats_url, settings.order_events.consumer)


@pytest.fixture
async def inventory(inventory_address: str) -> AsyncIterator[Any]:
    """An InventoryService client of the inventory orders calls."""
    async with channel(inventory_address) as connection:
        yield inventory_pb2_grpc.InventoryServiceStub(connection)


@pytest.fixture
def fake_inventory() -> FakeInventory:
    return FakeInventory()


@pytest.fixture
async def fake_inventory_address(fake_inventory: FakeInventory) -> AsyncIterator[str]:
    """For failure cases the real inventory cannot be made to show (slowness), and for speed."""
    async with serving_servicer(fake_inventory, inventory_pb2_grpc.add_InventoryServiceServicer_to_server) as fake:
        yield fake.address


@pytest.fixture
async def orders_database(infra: Infrastructure) -> AsyncIterator[str]:
    """A fresh orders database per test: each test's outbox holds only its own events."""
    async with fresh_database(infra.postgres_url, "orders", orders.main.MIGRATIONS) as name:
        yield name


@pytest.fixture
async def orders_engine(infra: Infrastructure, orders_database: str) -> AsyncIterator[AsyncEngine]:
    async with database_engine(infra.postgres_url, orders_database) as engine:
        yield engine


@pytest.fixture
def orders_settings(infra: Infrastructure, orders_database: str, inventory_address: str) -> OrdersSettings:
    return OrdersSettings(
        **session_settings(infra),
        orders_database=orders_database,
        inventory_addr=inventory_address,
        orders_port=free_port(),
        outbox_retry_max_seconds=0.5,
        # Above inventory_timeout_seconds as it must be, and short: a test that waits out a claim
        # left by a cancelled stream waits seconds, not the default half minute.
        placement_lease_seconds=4.0,
    )


@pytest.fixture
async def orders_address(orders_settings: OrdersSettings) -> AsyncIterator[str]:
    """The orders service with its outbox relay, in-process."""
    async with serving_orders(orders_settings) as address:
        yield address


@pytest.fixture
async def order_service(orders_address: str) -> AsyncIterator[Any]:
    """An OrderService client of the in-process server."""
    async with channel(orders_address) as connection:
        yield orders_pb2_grpc.OrderServiceStub(connection)
