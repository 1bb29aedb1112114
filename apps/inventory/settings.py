"""Inventory's settings beyond the shared ones: which catalog to load, the shop's currency, how
long a reservation may wait for its order, and its OrderCreated consumer (ORDERFLOW_INVENTORY_*)."""

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

from orderflow_contracts.streams import ORDER_CREATED_SUBJECT, ORDERS_STREAM
from orderflow_kit.jetstream_consumer import ConsumerSpec
from orderflow_kit.settings import Settings

DEMO_CATALOG = Path(__file__).with_name("demo_catalog.json")


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

    # The durable JetStream consumer of OrderCreated; also names its dead letters (dlq.<consumer>.>).
    inventory_consumer: str = "inventory"
    # Where a NEW durable consumer starts: "all" confirms the reservations of every order in the
    # stream (confirming is idempotent); "new" only sees events published after it exists.
    inventory_deliver_policy: Literal["all", "new"] = "all"
    inventory_max_deliver: int = Field(default=5, ge=1)
    # The most events one batch (one transaction) holds.
    inventory_batch_size: int = Field(default=100, ge=1)
    # Bounds each step of handling one event: the database transaction, and the dead-letter publish.
    inventory_handler_timeout_seconds: float = Field(default=10.0, gt=0)
    # The broker redelivers an unacked message after this; must exceed the handler's worst case.
    inventory_ack_wait_seconds: float = Field(default=30.0, gt=0)
    # Retry delays grow 2x per delivery from the base, up to the cap, with jitter.
    inventory_retry_base_seconds: float = Field(default=1.0, gt=0)
    inventory_retry_max_seconds: float = Field(default=60.0, gt=0)

    def order_events_consumer(self) -> ConsumerSpec:
        return ConsumerSpec(
            durable=self.inventory_consumer,
            stream=ORDERS_STREAM,
            subject=ORDER_CREATED_SUBJECT,
            deliver_policy=self.inventory_deliver_policy,
            max_deliver=self.inventory_max_deliver,
            handler_timeout_seconds=self.inventory_handler_timeout_seconds,
            ack_wait_seconds=self.inventory_ack_wait_seconds,
            retry_base_seconds=self.inventory_retry_base_seconds,
            retry_max_seconds=self.inventory_retry_max_seconds,
            batch_size=self.inventory_batch_size,
            duplicate_window_seconds=self.nats_duplicate_window_seconds,
        )

    @model_validator(mode="after")
    def _consumer_is_consistent(self) -> Self:
        """Refuse at start-up what the consumer would refuse later (ack_wait too short, say)."""
        self.order_events_consumer()
        return self
