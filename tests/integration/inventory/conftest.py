from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.main import MIGRATIONS
from inventory.settings import DEMO_CATALOG, InventorySettings
from orderflow_contracts.inventory.v1 import inventory_pb2_grpc
from orderflow_kit.grpc_client import channel
from orderflow_kit.infra import Infrastructure, free_port
from tests.support.databases import database_engine, fresh_database
from tests.support.services import serving_inventory


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
async def engine(infra: Infrastructure, database: str) -> AsyncIterator[AsyncEngine]:
    async with database_engine(infra.postgres_url, database) as engine:
        yield engine


@pytest.fixture
def settings(infra: Infrastructure, database: str) -> InventorySettings:
    return InventorySettings(
        postgres_url=infra.postgres_url,
        inventory_database=database,
        catalog=DEMO_CATALOG,
        currency="EUR",
        listen_host="127.0.0.1",
        inventory_port=free_port(),
        log_format="json",
        shutdown_grace_seconds=2.0,
    )


@pytest.fixture
async def inventory_address(settings: InventorySettings) -> AsyncIterator[str]:
    async with serving_inventory(settings) as address:
        yield address


@pytest.fixture
async def inventory(inventory_address: str) -> AsyncIterator[Any]:
    """An InventoryService client of the in-process server."""
    async with channel(inventory_address) as connection:
        yield inventory_pb2_grpc.InventoryServiceStub(connection)
