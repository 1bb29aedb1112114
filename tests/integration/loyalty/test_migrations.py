"""The migration builds exactly what the models declare (tables, indexes, constraints)."""

from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty.models import Balance, LedgerEntry, ProcessedEvent
from tests.support.schema import schema_differences


async def test_the_migration_builds_exactly_the_tables_the_models_declare(engine: AsyncEngine) -> None:
    tables = {model.__tablename__ for model in (Balance, LedgerEntry, ProcessedEvent)}
    assert await schema_differences(engine, tables) == []
