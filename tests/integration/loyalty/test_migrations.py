"""Migration 0003 gives the ledger entries written before it the balance right after each."""

import uuid

from sqlalchemy import text

from loyalty.main import MIGRATIONS
from orderflow_devstack.infra import Infrastructure
from orderflow_kit.db import migrate
from tests.support.databases import database_engine, fresh_database


async def test_0003_gives_earlier_entries_each_customers_running_balance(infra: Infrastructure) -> None:
    entries = [("alice", 10), ("bob", 7), ("alice", 5), ("alice", 0), ("bob", 1)]
    async with (
        fresh_database(infra.postgres_url, "loyalty", MIGRATIONS, revision="0002") as name,
        database_engine(infra.postgres_url, name) as engine,
    ):
        async with engine.begin() as connection:
            for customer, points in entries:
                await connection.execute(
                    text(
                        "INSERT INTO ledger (customer_id, order_id, event_id, points)"
                        " VALUES (:customer, :order_id, :event_id, :points)"
                    ),
                    {"customer": customer, "order_id": uuid.uuid4(), "event_id": str(uuid.uuid4()), "points": points},
                )

        await migrate(infra.postgres_url, name, MIGRATIONS)

        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT customer_id, balance_after FROM ledger ORDER BY id"))).all()
    assert [(row.customer_id, row.balance_after) for row in rows] == [
        ("alice", 10),
        ("bob", 7),
        ("alice", 15),
        ("alice", 15),
        ("bob", 8),
    ]
