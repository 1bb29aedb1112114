"""Wiring: settings, logging, migrations, then OrderService with the outbox relay and the
outbox's housekeeping beside it, and the fault flags' watcher (orderflow_kit.fault_bucket)."""

import asyncio
from datetime import timedelta
from functools import partial
from pathlib import Path

from orderflow_contracts.orders.v1 import orders_pb2, orders_pb2_grpc
from orderflow_kit.db import open_database, pool_gauges
from orderflow_kit.fault_bucket import watch_fault_flags
from orderflow_kit.gc_freeze import freeze_start_up_objects
from orderflow_kit.grpc_client import channel
from orderflow_kit.grpc_keepalive import Keepalive
from orderflow_kit.grpc_server import GrpcService, serve
from orderflow_kit.grpc_tls import channel_credentials, server_credentials
from orderflow_kit.housekeeping import purge_periodically
from orderflow_kit.metrics import metrics_endpoint
from orderflow_kit.readiness import nats_server, postgres
from orderflow_kit.telemetry import telemetry
from orders.inventory_client import InventoryClient
from orders.outbox import outbox_gauges, published_events
from orders.outbox_relay import OutboxRelay
from orders.placing_orders import Orders
from orders.servicer import OrderServicer
from orders.settings import OrdersSettings

MIGRATIONS = Path(__file__).with_name("migrations")
SERVICE_NAME = orders_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name


async def main() -> None:
    settings = OrdersSettings()
    with telemetry("orders", settings):
        freeze_start_up_objects()
        await run(settings)


async def run(settings: OrdersSettings, stop: asyncio.Event | None = None) -> None:
    """Migrate, then serve until SIGTERM (or until `stop` is set). NATS may be down: only the
    relay needs it, and it waits."""
    engine = await open_database(
        settings.postgres_url, settings.orders_database, MIGRATIONS, pool_size=settings.database_pool_size
    )
    inventory_channel = channel(
        settings.inventory_addr,
        credentials=channel_credentials(settings),
        keepalive=Keepalive.from_settings(settings),
    )
    inventory = InventoryClient(inventory_channel, release_within=settings.inventory_release_within_seconds)
    orders = Orders(
        engine,
        inventory,
        inventory_timeout=settings.inventory_timeout_seconds,
        placement_lease=settings.placement_lease_seconds,
    )
    relay = OutboxRelay(
        engine,
        settings.nats_url,
        batch_size=settings.outbox_batch_size,
        poll_seconds=settings.outbox_poll_seconds,
        linger_seconds=settings.outbox_linger_seconds,
        publish_timeout=settings.outbox_publish_timeout_seconds,
        retry_max_seconds=settings.outbox_retry_max_seconds,
        duplicate_window_seconds=settings.nats_duplicate_window_seconds,
    )
    measured = {"outbox": outbox_gauges(engine), "database pool": pool_gauges(engine)}
    try:
        with metrics_endpoint(settings.listen_host, settings.orders_metrics_port, measured):
            await serve(
                host=settings.listen_host,
                port=settings.orders_port,
                services=[
                    GrpcService(
                        SERVICE_NAME,
                        OrderServicer(
                            orders,
                            engine,
                            import_concurrency=settings.import_concurrency,
                            import_window=settings.import_window,
                        ),
                        orders_pb2_grpc.add_OrderServiceServicer_to_server,
                    )
                ],
                background=[
                    relay.run,
                    partial(watch_fault_flags, settings.nats_url, service="orders", bucket=settings.faults_bucket),
                    partial(
                        purge_periodically,
                        engine,
                        published_events(timedelta(seconds=settings.outbox_retention_seconds)),
                        every_seconds=settings.outbox_purge_interval_seconds,
                    ),
                ],
                # Orders are taken while NATS is down (the outbox keeps their events): NATS is reported, not required.
                dependencies=[postgres(engine), nats_server(settings.nats_url, required=False)],
                grace_seconds=settings.shutdown_grace_seconds,
                stop=stop,
                credentials=server_credentials(settings),
                keepalive=Keepalive.from_settings(settings),
            )
        await orders.finish_unfinished_work(within=settings.shutdown_grace_seconds)
    finally:
        await inventory_channel.close(grace=None)
        await engine.dispose()
