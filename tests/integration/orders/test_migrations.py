"""The hand-written migration builds exactly what the models declare (tables, indexes, checks)."""

from sqlalchemy.ext.asyncio import AsyncEngine

from orders.models import Order, OrderLine, OrderRequest, OutboxEvent
from tests.support.schema import schema_differences


async def test_the_migration_builds_exactly_the_tables_the_models_declare(orders_engine: AsyncEngine) -> None:
    tables = {model.__tablename__ for model in (Order, OrderLine, OrderRequest, OutboxEvent)}
    assert await schema_differences(orders_engine, tables) == []
