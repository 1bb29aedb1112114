"""The hand-written migration builds exactly what the models declare (tables, indexes, checks)."""

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from orders.models import Order, OrderLine, OutboxEvent

ORDERS_TABLES = {model.__tablename__ for model in (Order, OrderLine, OutboxEvent)}


def _ours(item: Any, name: str | None, kind: str, _reflected: bool, _compare_to: Any) -> bool:
    """Other services' models may share SQLModel.metadata in a test session: compare ours only.
    (`include_object` sees both sides; `include_name` would only filter the database's side.)"""
    table = name if kind == "table" else getattr(getattr(item, "table", None), "name", None)
    return table in ORDERS_TABLES


def differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"include_object": _ours})
    return list(compare_metadata(context, SQLModel.metadata))


async def test_the_migration_builds_exactly_the_tables_the_models_declare(orders_engine: AsyncEngine) -> None:
    async with orders_engine.connect() as connection:
        assert await connection.run_sync(differences) == []
