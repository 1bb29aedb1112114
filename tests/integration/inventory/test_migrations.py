import uuid

from sqlalchemy import text

from inventory.main import MIGRATIONS
from inventory.stock_conservation import StockCount, count_stock
from orderflow_devstack.infra import Infrastructure
from orderflow_kit.db import migrate
from tests.support.databases import database_engine, fresh_database


async def test_0002_confirms_the_reservations_held_before_it_and_counts_what_was_received(
    infra: Infrastructure,
) -> None:
    """Before 0002 a held reservation was final: the sweeper must not return the stock of orders
    placed before it existed, and stock must be conserved from the first moment."""
    held, released = uuid.uuid4(), uuid.uuid4()
    async with (
        fresh_database(infra.postgres_url, "inventory", MIGRATIONS, revision="0001") as name,
        database_engine(infra.postgres_url, name) as engine,
    ):
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

        await migrate(infra.postgres_url, name, MIGRATIONS)

        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT order_id, status FROM reservations"))).all()
        statuses: dict[uuid.UUID, str] = {row.order_id: row.status for row in rows}
        assert statuses == {held: "CONFIRMED", released: "RELEASED"}
        assert await count_stock(engine) == [StockCount("OLD-1", received=10, available=7, reserved=0, confirmed=3)]
