"""Wiring: settings, logging, database, catalog, then InventoryService until SIGTERM."""

import asyncio
from pathlib import Path

import structlog

from inventory.catalog import CatalogError, load_catalog_if_empty
from inventory.servicer import inventory_service
from inventory.settings import InventorySettings
from orderflow_kit.db import create_engine, migrate
from orderflow_kit.grpc_server import serve
from orderflow_kit.logging import configure_logging

MIGRATIONS = Path(__file__).with_name("migrations")


async def main() -> None:
    settings = InventorySettings()
    configure_logging("inventory", settings.log_format, settings.log_level)
    try:
        await run(settings)
    except CatalogError as error:
        structlog.get_logger().error("cannot start", error=str(error))
        raise SystemExit(1) from None


async def run(settings: InventorySettings, stop: asyncio.Event | None = None) -> None:
    """Migrate, seed the catalog on first start, and serve until SIGTERM (or until `stop` is set)."""
    await migrate(settings.postgres_url, settings.inventory_database, MIGRATIONS)
    engine = create_engine(settings.postgres_url, settings.inventory_database)
    try:
        await load_catalog_if_empty(engine, settings.catalog)
        await serve(
            host=settings.listen_host,
            port=settings.inventory_port,
            services=[inventory_service(engine, settings.currency)],
            grace_seconds=settings.shutdown_grace_seconds,
            stop=stop,
        )
    finally:
        await engine.dispose()
