"""Inventory's settings beyond the shared ones: which catalog to load, the shop's currency, how
long a reservation may wait for its order, and its OrderCreated consumer."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from orderflow_contracts.streams import ORDER_CREATED_SUBJECT, ORDERS_STREAM
from orderflow_kit.consumer_settings import ConsumerSettings
from orderflow_kit.settings import Settings

DEMO_CATALOG = Path(__file__).with_name("demo_catalog.json")


class InventoryConsumer(ConsumerSettings):
    """The durable consumer of OrderCreated: it confirms reservations. A new one starts with "all"
    by default: it confirms the reservations of every order in the stream (confirming is idempotent)."""

    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_INVENTORY_")
    stream = ORDERS_STREAM
    subject = ORDER_CREATED_SUBJECT

    consumer: str = "inventory"


class InventorySettings(Settings):
    # ORDERFLOW_CATALOG: the JSON file loaded into an empty products table on first start.
    catalog: Path = DEMO_CATALOG
    # ORDERFLOW_CURRENCY: one currency for the whole catalog; prices are integer cents of it.
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")

    # ORDERFLOW_RESERVATION_TTL_SECONDS: a reservation not confirmed by its OrderCreated within
    # this long expires and its stock goes back on sale. It must cover the time from reserving to
    # consuming the event: orders' inventory timeout and commit (seconds), plus any relay or NATS
    # outage it should ride out. An event later than this re-takes the stock if it is still there.
    reservation_ttl_seconds: float = Field(default=300.0, gt=0)
    # How often the sweeper looks for expired reservations, and how many it expires per transaction.
    reservation_sweep_seconds: float = Field(default=10.0, gt=0)
    reservation_sweep_batch_size: int = Field(default=100, ge=1)

    # Its durable consumer of OrderCreated (ORDERFLOW_INVENTORY_CONSUMER, ORDERFLOW_INVENTORY_MAX_DELIVER, ...).
    order_events: InventoryConsumer = Field(default_factory=InventoryConsumer)
