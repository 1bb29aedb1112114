"""How inventory reaches its database: SQLAlchemy Core statements on a pooled connection (no ORM
session, no unit of work), each statement compiled once and then served from SQLAlchemy's cache
and asyncpg's prepared statements.

Most of inventory's work is one statement (reservations, confirmations, releases, expiries are
each written as one, with data-modifying CTEs): on the kit's `autocommit` connection
(orderflow_kit.db) such a statement is its own transaction, so it costs one round trip instead of
three, and the row locks it takes end with it, never held while the client is away. Work that needs
several statements together uses `engine.begin()`.

Every statement that locks product rows locks them in one total order, byte order
(`ORDER BY sku COLLATE "C"`), whatever the database's collation: the order Python sorts SKUs in
(code points, which is UTF-8 byte order), so the SQL and the Python side agree. No deadlock is
expected then; should one happen anyway (a replica of an older version during a rolling deploy,
a manual transaction), or a serialization failure, PostgreSQL rolls that transaction back whole
and `retried_on_conflict` runs it again."""

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from orderflow_kit.failures import is_transaction_conflict

log = structlog.get_logger()
T = TypeVar("T")

# How often a transaction that lost a race (deadlock, serialization failure) is run, in all.
CONFLICT_ATTEMPTS = 5


async def retried_on_conflict(transaction: Callable[[], Awaitable[T]], *, attempts: int = CONFLICT_ATTEMPTS) -> T:
    """Run `transaction` (whole transactions, nothing kept from a failed attempt), again when
    PostgreSQL rolled it back for a deadlock or a serialization failure, after a short random
    pause (the two losers of a race should not meet again). The last attempt's error goes up:
    the consumer retries it later as a dependency failure (orderflow_kit.failures); over gRPC it
    is UNKNOWN, which orders' releases retry."""
    for attempt in range(1, attempts + 1):
        try:
            return await transaction()
        except Exception as error:
            if attempt == attempts or not is_transaction_conflict(error):
                raise
            log.warning("transaction rolled back by a conflict; running it again", attempt=attempt, error=str(error))
            await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
    raise AssertionError("unreachable")
