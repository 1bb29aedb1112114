"""Database-per-service on one PostgreSQL server: a service is given the server's URL and uses
its own database on it, creating the database and migrating it before it serves."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable

from orderflow_kit import tracing
from orderflow_kit.metrics import Source


def database_url(server_url: str, database: str) -> URL:
    """The SQLAlchemy (asyncpg) URL of `database` on the server at `server_url`."""
    url = make_url(server_url.replace("postgres://", "postgresql://", 1))
    return url.set(drivername="postgresql+asyncpg", database=database)


DEFAULT_POOL_SIZE = 10


def create_engine(server_url: str, database: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> AsyncEngine:
    """A fixed-size pool: no overflow connections opened and closed under load, and no pre-ping
    round trip on every checkout (a connection found broken when used is discarded, and the pool
    with it, by SQLAlchemy's disconnect handling; the caller's operation fails as in an outage).

    asyncpg tries TLS first unless told otherwise, a wasted round trip per connection against a
    server without it: TLS is off unless the URL asks for it (`?ssl=...` / `?sslmode=...`)."""
    url = database_url(server_url, database)
    asks_for_tls = "ssl" in url.query or "sslmode" in url.query
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=False,
        connect_args={} if asks_for_tls else {"ssl": False},
    )
    tracing.trace_engine(engine)  # a span per statement, when tracing is on
    return engine


async def open_database(server_url: str, database: str, migrations: Path, *, pool_size: int) -> AsyncEngine:
    """A service's start: its database migrated to the newest revision, and an engine on it with
    the pool's connections open."""
    await migrate(server_url, database, migrations)
    engine = create_engine(server_url, database, pool_size=pool_size)
    await open_pool(engine)
    return engine


async def open_pool(engine: AsyncEngine) -> None:
    """Open every pooled connection now, at start, rather than during the first load."""
    pool_size = engine.pool.size()  # type: ignore[attr-defined]  # QueuePool's
    async with contextlib.AsyncExitStack() as connections:
        await asyncio.gather(*(connections.enter_async_context(engine.connect()) for _ in range(pool_size)))


@contextlib.asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection on which every statement commits by itself: a statement that does all
    its work (data-modifying CTEs, a read) is its own transaction, one round trip instead of three
    (BEGIN, the statement, COMMIT or ROLLBACK), and the row locks it takes end with it."""
    async with engine.connect() as connection:
        yield await connection.execution_options(isolation_level="AUTOCOMMIT")


def pool_gauges(engine: AsyncEngine) -> Source:
    """The pool's connections in use and its size, by database: read from the pool, no query.
    In use at the size for long means callers queue for a connection."""
    database = engine.url.database or ""

    async def measure() -> list[Metric]:
        pool: Any = engine.pool  # QueuePool's counters
        in_use = GaugeMetricFamily(
            "orderflow_db_pool_connections_in_use", "Pooled database connections checked out now", labels=["database"]
        )
        in_use.add_metric([database], pool.checkedout())
        size = GaugeMetricFamily(
            "orderflow_db_pool_connections_max", "The most connections the pool holds", labels=["database"]
        )
        size.add_metric([database], pool.size())
        return [in_use, size]

    return measure


def backlog_gauges(
    engine: AsyncEngine, query: Executable, *, waiting: tuple[str, str], oldest_age: tuple[str, str]
) -> Source:
    """Two gauges of a backlog kept in a table, read with `query` when Prometheus scrapes: how many
    rows wait, and how long the oldest has waited in seconds (the query's two columns). Each gauge
    is given as (name, help)."""

    async def measure() -> list[Metric]:
        async with engine.connect() as connection:
            count, age = (await connection.execute(query)).one()
        return [GaugeMetricFamily(*waiting, value=count), GaugeMetricFamily(*oldest_age, value=float(age))]

    return measure


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


async def migrate(server_url: str, database: str, migrations: Path, revision: str = "head") -> None:
    """Bring the service's database to `revision` (by default the newest) of the Alembic migrations
    in `migrations`."""
    await ensure_database(server_url, database)
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option(
        "sqlalchemy.url", database_url(server_url, database).render_as_string(hide_password=False).replace("%", "%%")
    )
    # Alembic's env runs its own event loop (see migrations.run_migrations), so it gets a thread.
    await asyncio.to_thread(command.upgrade, config, revision)
