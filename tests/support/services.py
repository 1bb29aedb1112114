"""Each service's real wiring (`<service>.main.run`) served in the test's event loop on the port
its settings name, so tests exercise what production runs, not a test-only assembly; and a
service as a child process (`python -m <service>`), for tests that kill it or watch it die."""

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path
from typing import Any

import grpc

import inventory.main
import loyalty.main
import orders.main
from inventory.settings import InventorySettings
from loyalty.settings import LoyaltySettings
from orderflow_devstack.infra import Infrastructure, free_port
from orderflow_devstack.processes import ServiceProcess, ServiceSpec
from orderflow_kit.probe import grpc_serving
from orders.settings import OrdersSettings
from tests.support.grpc_servers import serving


def session_settings(infra: Infrastructure, **overrides: Any) -> dict[str, Any]:
    """The settings every service a test runs in-process shares: the session's servers, loopback
    only, JSON logs, and a short grace at shutdown; `overrides` change or add some."""
    return {
        "nats_url": infra.nats_url,
        "postgres_url": infra.postgres_url,
        "listen_host": "127.0.0.1",
        "log_format": "json",
        "shutdown_grace_seconds": 1.0,
        **overrides,
    }


def serving_inventory(
    settings: InventorySettings, credentials: grpc.ChannelCredentials | None = None
) -> AbstractAsyncContextManager[str]:
    """The inventory service until the block ends; yields its address. A service serving TLS is
    probed with `credentials`."""
    address = f"{settings.listen_host}:{settings.inventory_port}"
    return serving(partial(inventory.main.run, settings), address, credentials=credentials)


def serving_orders(settings: OrdersSettings) -> AbstractAsyncContextManager[str]:
    """The orders service, outbox relay included, until the block ends; yields its address."""
    return serving(partial(orders.main.run, settings), f"{settings.listen_host}:{settings.orders_port}")


def serving_loyalty(settings: LoyaltySettings) -> AbstractAsyncContextManager[str]:
    """The loyalty service, event consumer included, until the block ends; yields its address."""
    return serving(partial(loyalty.main.run, settings), f"{settings.listen_host}:{settings.loyalty_port}")


def orders_process(
    infra: Infrastructure,
    database: str,
    inventory_address: str,
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
) -> ServiceProcess:
    """`python -m orders` on a free port (in `spec.env["ORDERFLOW_ORDERS_PORT"]`), its output in
    `log`; `env` adds or overrides settings. Not started yet."""
    address = f"127.0.0.1:{free_port()}"
    settings = {
        "ORDERFLOW_NATS_URL": infra.nats_url,
        "ORDERFLOW_POSTGRES_URL": infra.postgres_url,
        "ORDERFLOW_ORDERS_DATABASE": database,
        "ORDERFLOW_INVENTORY_ADDR": inventory_address,
        "ORDERFLOW_LISTEN_HOST": "127.0.0.1",
        "ORDERFLOW_ORDERS_PORT": address.rsplit(":", 1)[1],
        "ORDERFLOW_LOG_FORMAT": "json",
        **(env or {}),
    }
    return ServiceProcess(ServiceSpec("orders", "orders", settings, partial(grpc_serving, address)), log.open("w"))
