from sqlmodel import SQLModel

import orders.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from orderflow_kit.migrations import run_migrations

run_migrations(SQLModel.metadata)
