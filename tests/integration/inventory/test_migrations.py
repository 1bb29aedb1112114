from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from inventory.models import Product, Reservation, ReservationLine

INVENTORY_TABLES = {model.__tablename__ for model in (Product, Reservation, ReservationLine)}


def differences(connection: Connection) -> list[object]:
    """Alembic's autogenerate diff, limited to inventory's tables: other services' models may
    share SQLModel.metadata in a test session."""
    context = MigrationContext.configure(
        connection,
        opts={"include_name": lambda name, kind, _parent: kind != "table" or name in INVENTORY_TABLES},
    )
    return list(compare_metadata(context, SQLModel.metadata))


async def test_the_migrations_build_exactly_the_tables_the_models_declare(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        assert await connection.run_sync(differences) == []
