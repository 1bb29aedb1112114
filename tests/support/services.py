"""Each service's real wiring (`<service>.main.run`) served in the test's event loop on the port
its settings name, so tests exercise what production runs, not a test-only assembly."""

from contextlib import AbstractAsyncContextManager
from functools import partial

import inventory.main
import loyalty.main
import orders.main
from inventory.settings import InventorySettings
from loyalty.settings import LoyaltySettings
from orders.settings import OrdersSettings
from tests.support.grpc_servers import serving


def serving_inventory(settings: InventorySettings) -> AbstractAsyncContextManager[str]:
    """The inventory service until the block ends; yields its address."""
    return serving(partial(inventory.main.run, settings), f"{settings.listen_host}:{settings.inventory_port}")


def serving_orders(settings: OrdersSettings) -> AbstractAsyncContextManager[str]:
    """The orders service, outbox relay included, until the block ends; yields its address."""
    return serving(partial(orders.main.run, settings), f"{settings.listen_host}:{settings.orders_port}")


def serving_loyalty(settings: LoyaltySettings) -> AbstractAsyncContextManager[str]:
    """The loyalty service, event consumer included, until the block ends; yields its address."""
    return serving(partial(loyalty.main.run, settings), f"{settings.listen_host}:{settings.loyalty_port}")
