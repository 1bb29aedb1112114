"""One total order for product locks, whatever the database's collation: every statement that
locks product rows (reserve, release, expiry, late confirmation, restock) locks them in byte order
(`COLLATE "C"`), the order Python sorts SKUs in; and a transaction PostgreSQL rolls back for a
deadlock is run again.

On a database whose collation ignores punctuation (ICU, `und-u-ka-shifted`, as glibc's en_US
does), `ORDER BY sku` puts 'X1' before 'X-2', byte order the other way. Each case holds the lock
of the SKU that comes second in byte order and starts the operation: it must then hold the first
one already (a NOWAIT probe fails), having locked in byte order, not in the collation's."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import TextClause, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from inventory import reservations as reservation_sql
from inventory import restocking as restocking_sql
from inventory.main import MIGRATIONS
from inventory.reservations import (
    Confirmation,
    StockLine,
    confirm_reservations,
    expire_reservations,
    release_stock,
    reserve_stock,
)
from inventory.restocking import RestockLine, restock
from orderflow_devstack.infra import Infrastructure
from orderflow_kit.db import migrate
from tests.integration.inventory.helpers import available, held_since_an_hour
from tests.support.databases import database_engine, fresh_database, scalar
from tests.support.polling import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Punctuation ignored at the first level: 'X1' < 'X-2', where byte order has 'X-2' < 'X1'.
PUNCTUATION_BLIND = "und-u-ka-shifted"
LOCK_NOT_AVAILABLE = "55P03"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    """Inventory's schema on a database created with an ICU collation that is not byte order."""
    name = f"inventory_test_icu_{uuid.uuid4().hex[:12]}"
    async with database_engine(infra.postgres_url, "postgres") as server, server.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        try:
            await connection.execute(
                text(
                    f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '
                    f"'{PUNCTUATION_BLIND}'"
                )
            )
        except DBAPIError as error:
            pytest.skip(f"this PostgreSQL cannot create an ICU database: {error.orig}")
    try:
        await migrate(infra.postgres_url, name, MIGRATIONS)
        async with database_engine(infra.postgres_url, name) as engine:
            yield engine
    finally:
        async with database_engine(infra.postgres_url, "postgres") as server, server.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def any_engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    """Inventory's schema on a database of the server's default collation."""
    async with (
        fresh_database(infra.postgres_url, "inventory", MIGRATIONS) as name,
        database_engine(infra.postgres_url, name) as engine,
    ):
        yield engine


async def two_products(engine: AsyncEngine, *, collated_otherwise: bool = True) -> tuple[str, str]:
    """Two new SKUs, (first, second) in byte order, which the database's collation sorts the other
    way (unless told that it need not)."""
    stem = f"L{uuid.uuid4().hex[:10].upper()}"
    first, second = f"{stem}-2", f"{stem}1"
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO products (sku, name, price_cents, available, received)"
                " SELECT sku, 'Lock order ' || sku, 100, 10, 10 FROM unnest(CAST(:skus AS varchar[])) AS sku"
            ),
            {"skus": [first, second]},
        )
        collated = list(
            (
                await connection.execute(
                    text("SELECT sku FROM unnest(CAST(:skus AS varchar[])) AS sku ORDER BY sku"),
                    {"skus": [first, second]},
                )
            ).scalars()
        )
    assert sorted([second, first]) == [first, second]
    if collated_otherwise:
        assert collated == [second, first], "the database's collation is byte order: this test proves nothing"
    return first, second


async def lock(connection: AsyncConnection, sku: str) -> None:
    await connection.execute(text("SELECT sku FROM products WHERE sku = :sku FOR NO KEY UPDATE"), {"sku": sku})


async def someone_waits_for_a_lock(engine: AsyncEngine) -> bool:
    waiting = await scalar(
        engine,
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
    )
    return bool(waiting)


async def is_locked(engine: AsyncEngine, sku: str) -> bool:
    async with engine.connect() as connection:
        try:
            await connection.execute(
                text("SELECT sku FROM products WHERE sku = :sku FOR NO KEY UPDATE NOWAIT"), {"sku": sku}
            )
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
                return True
            raise
        finally:
            await connection.rollback()
    return False


async def reserved(engine: AsyncEngine, first: str, second: str) -> uuid.UUID:
    order = uuid.uuid4()
    await reserve_stock(engine, str(order), [StockLine(second, 1), StockLine(first, 1)])
    return order


async def lines(*items: RestockLine) -> AsyncIterator[RestockLine]:
    for item in items:
        yield item


Operation = Callable[[AsyncEngine, str, str], Awaitable[Callable[[], Coroutine[Any, Any, object]]]]


async def reserving(engine: AsyncEngine, first: str, second: str) -> Callable[[], Coroutine[Any, Any, object]]:
    order = str(uuid.uuid4())
    return lambda: reserve_stock(engine, order, [StockLine(second, 1), StockLine(first, 1)])


async def releasing(engine: AsyncEngine, first: str, second: str) -> Callable[[], Coroutine[Any, Any, object]]:
    order = str(await reserved(engine, first, second))
    return lambda: release_stock(engine, order)


async def expiring(engine: AsyncEngine, first: str, second: str) -> Callable[[], Coroutine[Any, Any, object]]:
    await held_since_an_hour(engine, await reserved(engine, first, second))
    return lambda: expire_reservations(engine, ttl=timedelta(minutes=1), limit=1000)


async def confirming_late(engine: AsyncEngine, first: str, second: str) -> Callable[[], Coroutine[Any, Any, object]]:
    order = await reserved(engine, first, second)
    await release_stock(engine, str(order))

    async def confirm() -> object:
        [outcome] = await confirm_reservations(engine, [order])
        assert outcome is Confirmation.CONFIRMED_LATE
        return outcome

    return confirm


async def restocking(engine: AsyncEngine, first: str, second: str) -> Callable[[], Coroutine[Any, Any, object]]:
    return lambda: restock(engine, lines(RestockLine(second, 1), RestockLine(first, 1)))


OPERATIONS: dict[str, Operation] = {
    "reserve": reserving,
    "release": releasing,
    "expiry": expiring,
    "late confirmation": confirming_late,
    "restock": restocking,
}


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_product_rows_are_locked_in_byte_order_whatever_the_collation(
    engine: AsyncEngine, operation: str
) -> None:
    first, second = await two_products(engine)
    run = await OPERATIONS[operation](engine, first, second)

    async with engine.connect() as holder:
        await lock(holder, second)
        running = asyncio.create_task(run())
        try:
            await eventually(lambda: someone_waits_for_a_lock(engine), what=f"{operation} waiting for {second}")
            holds_the_first = await is_locked(engine, first)
        finally:
            await holder.rollback()
        await running

    assert holds_the_first, f"{operation} did not lock {first} before {second}: not in byte order"


async def test_a_release_rolled_back_by_a_deadlock_is_run_again(any_engine: AsyncEngine) -> None:
    """A transaction locking in the other order (an older replica, a manual fix) meets a release:
    PostgreSQL picks the release as the victim (its deadlock_timeout runs out first), and the
    release runs again once the other transaction is done."""
    engine = any_engine
    first, second = await two_products(engine, collated_otherwise=False)
    order = await reserved(engine, first, second)
    before = await available(engine, first), await available(engine, second)

    async with engine.connect() as other:
        await other.execute(text("SET LOCAL deadlock_timeout = '30s'"))  # the release detects it first
        await lock(other, second)
        releasing = asyncio.create_task(release_stock(engine, str(order)))
        await eventually(lambda: someone_waits_for_a_lock(engine), what="the release waiting")
        await lock(other, first)  # a deadlock: the release holds `first` and waits for `second`
        await other.commit()
        released = await releasing

    assert released is True
    assert (await available(engine, first), await available(engine, second)) == (before[0] + 1, before[1] + 1)


# --- the same order, proved in SQL on any server ---------------------------------------------------

# Strings whose orders differ between collations: punctuation, digits, case, accents, other planes.
TRICKY = ["A1", "A-2", "A10", "A9", "a1", "Z", "0", "-", "\u00e9", "e\u0301", "\uff5a", "\U0001d11e", "\u00ff"]


async def test_python_sorts_strings_in_utf8_byte_order_which_is_the_c_collation(any_engine: AsyncEngine) -> None:
    async with any_engine.connect() as connection:
        in_c = list(
            (
                await connection.execute(
                    text('SELECT s FROM unnest(CAST(:strings AS varchar[])) AS s ORDER BY s COLLATE "C"'),
                    {"strings": TRICKY},
                )
            ).scalars()
        )

    assert sorted(TRICKY) == sorted(TRICKY, key=lambda string: string.encode()) == in_c


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def scans_products(node: dict[str, Any]) -> bool:
    return any(each.get("Relation Name") == "products" for each in plan_nodes(node))


LOCKING: dict[str, tuple[TextClause, dict[str, Any]]] = {
    "reserve": (reservation_sql._RESERVE, {"order_id": uuid.uuid4(), "skus": ["A1", "A-2"], "quantities": [1, 1]}),
    "release": (reservation_sql._RELEASE, {"order_id": uuid.uuid4()}),
    "expiry": (reservation_sql._EXPIRE, {"ttl": timedelta(minutes=1), "limit": 100}),
    "late confirmation": (reservation_sql._TAKE_AGAIN, {"order_id": uuid.uuid4()}),
    "restock": (restocking_sql._LOCK_PRODUCTS, {"skus": ["A1", "A-2"]}),
}


@pytest.mark.parametrize("statement", LOCKING)
async def test_every_statement_that_locks_products_sorts_them_in_the_c_collation_first(
    any_engine: AsyncEngine, statement: str
) -> None:
    """PostgreSQL's plan: each LockRows over products sits on a Sort by `sku COLLATE "C"`, so rows
    are locked in byte order whatever the database's collation."""
    query, parameters = LOCKING[statement]
    async with any_engine.connect() as connection:
        explained = await connection.scalar(text(f"EXPLAIN (VERBOSE, FORMAT JSON) {query.text}"), parameters)
        await connection.rollback()
    plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]

    locks = [node for node in plan_nodes(plan) if node["Node Type"] == "LockRows" and scans_products(node)]
    assert locks, f"{statement} locks no product row"
    for lock_node in locks:
        [below] = lock_node["Plans"]
        assert below["Node Type"] == "Sort", below
        assert below["Sort Key"] == ['products.sku COLLATE "C"'], below
