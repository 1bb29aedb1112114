from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.models import Product, Reservation, ReservationLine
from tests.support.schema import schema_differences


async def test_the_migrations_build_exactly_the_tables_the_models_declare(engine: AsyncEngine) -> None:
    tables = {model.__tablename__ for model in (Product, Reservation, ReservationLine)}
    assert await schema_differences(engine, tables) == []
