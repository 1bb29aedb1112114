"""Fixtures the integration suites share."""

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_devstack.infra import Infrastructure
from tests.support.databases import database_engine


@pytest.fixture
async def engine(infra: Infrastructure, database: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the service's database of a suite's tests (its conftest's `database`)."""
    async with database_engine(infra.postgres_url, database) as engine:
        yield engine
