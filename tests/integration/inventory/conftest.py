from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from nats.js import JetStreamContext

from inventory.main import MIGRATIONS
from inventory.settings import DEMO_CATALOG, InventoryConsumer, InventorySettings
from orderflow_contracts.inventory.v1 import inventory_pb2_grpc
from orderflow_devstack.infra import Infrastructure, free_port
from orderflow_kit.grpc_client import channel
from tests.support.databases import fresh_database
from tests.support.jetstream import consumer_exists, delete_consumer, impatient, jetstream
from tests.support.polling import eventually
from tests.support.services import serving_inventory, session_settings


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def database(infra: Infrastructure) -> AsyncIterator[str]:
    """One fresh database per test module, dropped at its end."""
    async with fresh_database(infra.postgres_url, "inventory", MIGRATIONS) as name:
        yield name


@pytest.fixture
async def empty_database(infra: Infrastructure) -> AsyncIterator[str]:
    """A database of the test's own, for tests that need an empty products table."""
    async with fresh_database(infra.postgres_url, "inventory", MIGRATIONS) as name:
        yield name


@pytest.fixture
async def settings(infra: Infrastructure, database: str) -> AsyncIterator[InventorySettings]:
    """Short timeouts and retries; an OrderCreated consumer of the test's own that only sees new
    events (removed at the end); a TTL long enough that nothing expires unless a test says so."""
    settings = InventorySettings(
        **session_settings(infra, shutdown_grace_seconds=2.0),
        inventory_database=database,
        catalog=DEMO_CATALOG,
        currency="EUR",
        inventory_port=free_port(),
        order_events=impatient(InventoryConsumer, "inventory"),
        reservation_sweep_seconds=0.2,
    )
    yield settings
    await delete_consumer(infra.nats_url, settings.order_events.consumer)


@pytest.fixture
async def js(infra: Infrastructure) -> AsyncIterator[JetStreamContext]:
    """The test's own NATS connection, to publish events as orders would."""
    async with jetstream(infra.nats_url) as connected:
        yield connected


@pytest.fixture
async def inventory_address(settings: InventorySettings) -> AsyncIterator[str]:
    async with serving_inventory(settings) as address:
        yield address


@pytest.fixture
async def confirming(inventory_address: str, settings: InventorySettings, js: JetStreamContext) -> str:
    """The service, once its OrderCreated consumer exists: with deliver policy "new", an event
    published before that would never reach it."""
    await eventually(lambda: consumer_exists(js, settings.order_events.consumer), what="the inventory consumer")
    return inventory_address


@pytest.fixture
async def inventory(inventory_address: str) -> AsyncIterator[Any]:
    """An InventoryService client of the in-process server."""
    async with channel(inventory_address) as connection:
        yield inventory_pb2_grpc.InventoryServiceStub(connection)
