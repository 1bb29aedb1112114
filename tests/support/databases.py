"""A fresh, migrated database of its own for each test module (or test) on the session's server:
tests never share rows by accident, and nothing is left behind."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_kit.db import create_engine, migrate


@asynccontextmanager
async def fresh_database(server_url: str, prefix: str, migrations: Path, revision: str = "head") -> AsyncIterator[str]:
    """A new database named `<prefix>_test_<random>`, migrated to `revision` (by default the newest:
    a test of one migration starts at the revision before it); dropped (WITH FORCE) at the end."""
    name = f"{prefix}_test_{uuid.uuid4().hex[:12]}"
    await migrate(server_url, name, migrations, revision)
    try:
        yield name
    finally:
        await _drop_database(server_url, name)


@asynccontextmanager
async def database_engine(server_url: str, database: str) -> AsyncIterator[AsyncEngine]:
    """An engine on `database`, disposed at the end."""
    engine = create_engine(server_url, database)
    try:
        yield engine
    finally:
        await engine.dispose()


async def scalar(engine: AsyncEngine, query: str, **parameters: object) -> Any:
    """The first column of the first row `query` returns (None: no row), on a connection of its
    own that is closed at once: the test holds no session open meanwhile."""
    async with engine.connect() as connection:
        return await connection.scalar(text(query), parameters)


async def _drop_database(server_url: str, name: str) -> None:
    async with database_engine(server_url, "postgres") as engine, engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
