"""Does a service's migration build exactly what its models declare?"""

from collections.abc import Collection
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel


async def schema_differences(engine: AsyncEngine, tables: Collection[str]) -> list[object]:
    """Alembic's autogenerate diff between the migrated database and the models of `tables`.

    Every service's models share SQLModel.metadata when a test session imports them all, so the
    comparison is limited to `tables` on both sides (`include_object` sees both; `include_name`
    would filter only the database's side)."""

    def ours(item: Any, name: str | None, kind: str, _reflected: bool, _compare_to: Any) -> bool:
        table = name if kind == "table" else getattr(getattr(item, "table", None), "name", None)
        return table in tables

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"include_object": ours})
        return list(compare_metadata(context, SQLModel.metadata))

    async with engine.connect() as connection:
        return await connection.run_sync(differences)
