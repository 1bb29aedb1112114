"""Each service's migrations build exactly what its models declare (tables, indexes, constraints)."""

from pathlib import Path

import pytest

import inventory.main
import loyalty.main
import orders.main
from inventory.models import Product, Reservation, ReservationLine
from loyalty.models import Balance, LedgerEntry, ProcessedEvent
from orderflow_devstack.infra import Infrastructure
from orders.models import Order, OrderLine, OrderRequest, OutboxEvent
from tests.support.databases import database_engine, fresh_database
from tests.support.schema import schema_differences

# Each service's migrations, and the tables its models declare.
SERVICES: dict[str, tuple[Path, set[str]]] = {
    "inventory": (
        inventory.main.MIGRATIONS,
        {Product.__tablename__, Reservation.__tablename__, ReservationLine.__tablename__},
    ),
    "orders": (
        orders.main.MIGRATIONS,
        {Order.__tablename__, OrderLine.__tablename__, OrderRequest.__tablename__, OutboxEvent.__tablename__},
    ),
    "loyalty": (
        loyalty.main.MIGRATIONS,
        {Balance.__tablename__, LedgerEntry.__tablename__, ProcessedEvent.__tablename__},
    ),
}


@pytest.mark.parametrize("service", SERVICES)
async def test_the_migrations_build_exactly_the_tables_the_models_declare(infra: Infrastructure, service: str) -> None:
    migrations, tables = SERVICES[service]
    async with (
        fresh_database(infra.postgres_url, service, migrations) as name,
        database_engine(infra.postgres_url, name) as engine,
    ):
        assert await schema_differences(engine, tables) == []
