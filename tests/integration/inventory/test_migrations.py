import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.main import MIGRATIONS
from inventory.models import Product, Reservation, ReservationLine
from inventory.stock_conservation import StockCount, count_stock
from orderflow_devstack.infra import Infrastructure
from orderflow_kit.db import alembic_config
from tests.support.databases import database_engine, fresh_database
from tests.support.schema import schema_differences


async def test_the_migrations_build_exactly_the_tables_the_models_declare(engine: AsyncEngine) -> None:
    tables = {model.__tablename__ for model in (Product, Reservation, ReservationLine)}
    assert await schema_differences(engine, tables) == []


@pytest.fixture
async def database_at_0001(infra: Infrastructure) -> AsyncIterator[tuple[str, Config]]:
    """A database migrated to 0001 only, and the Alembic configuration to take it further."""
    async with fresh_database(infra.postgres_url, "inventory", MIGRATIONS, revision="0001") as name:
        yield name, alembic_config(infra.postgres_url, name, MIGRATIONS)


async def test_0002_confirms_the_reservations_held_before_it_and_counts_what_was_received(
    infra: Infrastructure, database_at_0001: tuple[str, Config]
) -> None:
    """Before 0002 a held reservation was final: the sweeper must not return the stock of orders
    placed before it existed, and stock must be conserved from the first moment."""
    name, config = database_at_0001
    held, released = uuid.uuid4(), uuid.uuid4()
    async with database_engine(infra.postgres_url, name) as engine:
        async with engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO products (sku, name, price_cents, available) VALUES ('OLD-1', 'Old', 100, 7)")
            )
            await connection.execute(
                text("INSERT INTO reservations (order_id, status) VALUES (:held, 'RESERVED'), (:released, 'RELEASED')"),
                {"held": held, "released": released},
            )
            await connection.execute(
                text(
                    "INSERT INTO reservation_lines (order_id, sku, quantity, unit_price_cents)"
                    " VALUES (:held, 'OLD-1', 3, 100), (:released, 'OLD-1', 2, 100)"
                ),
                {"held": held, "released": released},
            )

        await asyncio.to_thread(command.upgrade, config, "head")

        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT order_id, status FROM reservations"))).all()
        statuses: dict[uuid.UUID, str] = {row.order_id: row.status for row in rows}
        assert statuses == {held: "CONFIRMED", released: "RELEASED"}
        assert await count_stock(engine) == [StockCount("OLD-1", received=10, available=7, reserved=0, confirmed=3)]
