"""Wiring: settings, logging, database, catalog, then InventoryService until SIGTERM, with the
OrderCreated consumer (confirms reservations), the sweeper (expires them) and the stock listener
(feeds WatchStock) beside it, and the fault flags' watcher (orderflow_kit.fault_bucket)."""

import asyncio
from functools import partial
from pathlib import Path

import structlog

from inventory.catalog import CatalogError, load_catalog_if_empty
from inventory.expiry import sweep_expired_reservations
from inventory.order_events import order_events
from inventory.reservations import reservation_gauges
from inventory.servicer import inventory_service
from inventory.settings import InventorySettings
from inventory.stock_watch import StockWatch
from orderflow_kit.db import open_database, pool_gauges
from orderflow_kit.fault_bucket import watch_fault_flags
from orderflow_kit.gc_freeze import freeze_start_up_objects
from orderflow_kit.grpc_keepalive import Keepalive
from orderflow_kit.grpc_server import serve
from orderflow_kit.grpc_tls import server_credentials
from orderflow_kit.jetstream_consumer import consume
from orderflow_kit.metrics import metrics_endpoint
from orderflow_kit.readiness import consumer_started, nats_server, postgres
from orderflow_kit.telemetry import telemetry

MIGRATIONS = Path(__file__).with_name("migrations")


async def main() -> None:
    settings = InventorySettings()
    with telemetry("inventory", settings):
        freeze_start_up_objects()
        try:
            await run(settings)
        except CatalogError as error:
            structlog.get_logger().error("cannot start", error=str(error))
            raise SystemExit(1) from None


async def run(settings: InventorySettings, stop: asyncio.Event | None = None) -> None:
    """Migrate, seed the catalog on first start, and serve until SIGTERM (or until `stop` is set)."""
    engine = await open_database(
        settings.postgres_url, settings.inventory_database, MIGRATIONS, pool_size=settings.database_pool_size
    )
    subscribed = asyncio.Event()
    stock_watch = StockWatch(engine)
    measured = {"reservations": reservation_gauges(engine), "database pool": pool_gauges(engine)}
    try:
        await load_catalog_if_empty(engine, settings.catalog)
        with metrics_endpoint(settings.listen_host, settings.inventory_metrics_port, measured):
            await serve(
                host=settings.listen_host,
                port=settings.inventory_port,
                services=[inventory_service(engine, settings.currency, stock_watch)],
                background=[
                    stock_watch.run,
                    partial(consume, order_events(settings, engine), settings, subscribed),
                    partial(watch_fault_flags, settings.nats_url, service="inventory", bucket=settings.faults_bucket),
                    partial(
                        sweep_expired_reservations,
                        engine,
                        ttl_seconds=settings.reservation_ttl_seconds,
                        every_seconds=settings.reservation_sweep_seconds,
                        batch_size=settings.reservation_sweep_batch_size,
                    ),
                ],
                # Reservations need only the database; NATS and the consumer are reported, not required.
                dependencies=[
                    postgres(engine),
                    nats_server(settings.nats_url, required=False),
                    consumer_started(subscribed, required=False),
                ],
                grace_seconds=settings.shutdown_grace_seconds,
                stop=stop,
                credentials=server_credentials(settings),
                keepalive=Keepalive.from_settings(settings),
                on_stopping=[stock_watch.end_all],
            )
    finally:
        await engine.dispose()
