"""How inventory reaches its database: SQLAlchemy Core statements on a pooled connection (no ORM
session, no unit of work), each statement compiled once and then served from SQLAlchemy's cache
and asyncpg's prepared statements.

Most of inventory's work is one statement (reservations, confirmations, releases, expiries are
each written as one, with data-modifying CTEs): on an `autocommit` connection such a statement is
its own transaction, so it costs one round trip instead of three (BEGIN, the statement, COMMIT),
and the row locks it takes end with it, never held while the client is away. Work that needs
several statements together uses `engine.begin()`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection on which every statement commits by itself (no BEGIN, no COMMIT)."""
    async with engine.connect() as connection:
        yield await connection.execution_options(isolation_level="AUTOCOMMIT")
