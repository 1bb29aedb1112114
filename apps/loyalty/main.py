"""Wiring: settings, logging, migrations, then LoyaltyService with the OrderCreated consumer and
the dedupe table's housekeeping beside it, and the fault flags' watcher (orderflow_kit.fault_bucket)."""

import asyncio
from datetime import timedelta
from functools import partial
from pathlib import Path

from loyalty.consumer import order_events
from loyalty.dedupe import expired_claims
from loyalty.servicer import loyalty_service
from loyalty.settings import LoyaltySettings
from orderflow_kit.db import open_database, pool_gauges
from orderflow_kit.fault_bucket import watch_fault_flags
from orderflow_kit.gc_freeze import freeze_start_up_objects
from orderflow_kit.grpc_keepalive import Keepalive
from orderflow_kit.grpc_server import serve
from orderflow_kit.grpc_tls import server_credentials
from orderflow_kit.housekeeping import purge_periodically
from orderflow_kit.jetstream_consumer import consume
from orderflow_kit.metrics import metrics_endpoint
from orderflow_kit.readiness import consumer_started, nats_server, postgres
from orderflow_kit.telemetry import telemetry

MIGRATIONS = Path(__file__).with_name("migrations")


async def main() -> None:
    settings = LoyaltySettings()
    with telemetry("loyalty", settings):
        freeze_start_up_objects()
        await run(settings)


async def run(settings: LoyaltySettings, stop: asyncio.Event | None = None) -> None:
    """Migrate, then serve gRPC and consume events until SIGTERM (or until `stop` is set)."""
    engine = await open_database(
        settings.postgres_url, settings.loyalty_database, MIGRATIONS, pool_size=settings.database_pool_size
    )
    subscribed = asyncio.Event()
    try:
        with metrics_endpoint(
            settings.listen_host, settings.loyalty_metrics_port, {"database pool": pool_gauges(engine)}
        ):
            await serve(
                host=settings.listen_host,
                port=settings.loyalty_port,
                services=[loyalty_service(engine)],
                background=[
                    partial(consume, order_events(settings, engine), settings, subscribed),
                    partial(watch_fault_flags, settings.nats_url, service="loyalty", bucket=settings.faults_bucket),
                    partial(
                        purge_periodically,
                        engine,
                        expired_claims(timedelta(seconds=settings.loyalty_dedupe_retention_seconds)),
                        every_seconds=settings.loyalty_dedupe_purge_interval_seconds,
                    ),
                ],
                # No points are awarded without the consumer, so NATS and the consumer are required as well.
                dependencies=[postgres(engine), nats_server(settings.nats_url), consumer_started(subscribed)],
                grace_seconds=settings.shutdown_grace_seconds,
                stop=stop,
                credentials=server_credentials(settings),
                keepalive=Keepalive.from_settings(settings),
            )
    finally:
        await engine.dispose()
