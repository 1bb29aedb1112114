"""Database-per-service on one PostgreSQL server: a service is given the server's URL and uses
its own database on it, creating the database and migrating it before it serves."""

import asyncio
import contextlib
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def database_url(server_url: str, database: str) -> URL:
    """The SQLAlchemy (asyncpg) URL of `database` on the server at `server_url`."""
    url = make_url(server_url.replace("postgres://", "postgresql://", 1))
    return url.set(drivername="postgresql+asyncpg", database=database)


def create_engine(server_url: str, database: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        database_url(server_url, database),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )


async def ensure_database(server_url: str, database: str) -> None:
    """CREATE DATABASE if missing; safe when several replicas start at once."""
    server = make_url(server_url.replace("postgres://", "postgresql://", 1))
    dsn = server.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                await connection.execute(f'CREATE DATABASE "{database}"')
    finally:
        await connection.close()


async def migrate(server_url: str, database: str, migrations: Path) -> None:
    """Bring the service's database to the newest Alembic revision in `migrations`."""
    await ensure_database(server_url, database)
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option(
        "sqlalchemy.url", database_url(server_url, database).render_as_string(hide_password=False).replace("%", "%%")
    )
    # Alembic's env runs its own event loop (see migrations.run_migrations), so it gets a thread.
    await asyncio.to_thread(command.upgrade, config, "head")
