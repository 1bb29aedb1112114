"""The migrations build exactly what the models declare (tables, indexes, constraints), and 0003
gives the ledger entries written before it the balance right after each."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty.main import MIGRATIONS
from loyalty.models import Balance, LedgerEntry, ProcessedEvent
from orderflow_devstack.infra import Infrastructure
from orderflow_kit.db import alembic_config
from tests.support.databases import database_engine, fresh_database
from tests.support.schema import schema_differences


async def test_the_migration_builds_exactly_the_tables_the_models_declare(engine: AsyncEngine) -> None:
    tables = {model.__tablename__ for model in (Balance, LedgerEntry, ProcessedEvent)}
    assert await schema_differences(engine, tables) == []


@pytest.fixture
async def database_at_0002(infra: Infrastructure) -> AsyncIterator[tuple[str, Config]]:
    """A database migrated to 0002 only, and the Alembic configuration to take it further."""
    async with fresh_database(infra.postgres_url, "loyalty", MIGRATIONS, revision="0002") as name:
        yield name, alembic_config(infra.postgres_url, name, MIGRATIONS)


async def test_0003_gives_earlier_entries_each_customers_running_balance(
    infra: Infrastructure, database_at_0002: tuple[str, Config]
) -> None:
    name, config = database_at_0002
    entries = [("alice", 10), ("bob", 7), ("alice", 5), ("alice", 0), ("bob", 1)]
    async with database_engine(infra.postgres_url, name) as engine:
        async with engine.begin() as connection:
            for customer, points in entries:
                await connection.execute(
                    text(
                        "INSERT INTO ledger (customer_id, order_id, event_id, points)"
                        " VALUES (:customer, :order_id, :event_id, :points)"
                    ),
                    {"customer": customer, "order_id": uuid.uuid4(), "event_id": str(uuid.uuid4()), "points": points},
                )

        await asyncio.to_thread(command.upgrade, config, "head")

        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT customer_id, balance_after FROM ledger ORDER BY id"))).all()
    assert [(row.customer_id, row.balance_after) for row in rows] == [
        ("alice", 10),
        ("bob", 7),
        ("alice", 15),
        ("alice", 15),
        ("bob", 8),
    ]
