"""Loyalty's own settings (ORDERFLOW_LOYALTY_*), on top of the shared ones."""

from typing import Literal, Self

from pydantic import Field, model_validator

from orderflow_contracts.streams import ORDER_CREATED_SUBJECT, ORDERS_STREAM
from orderflow_kit.jetstream_consumer import ConsumerSpec
from orderflow_kit.nats import REDELIVERY_HORIZON_SECONDS
from orderflow_kit.settings import Settings


class LoyaltySettings(Settings):
    # The durable JetStream consumer's name; also names its dead-letter subject (dlq.<consumer>.>).
    loyalty_consumer: str = "loyalty"
    # Where a NEW durable consumer starts: "all" replays the stream's history (the dedupe table
    # makes that safe); "new" only sees events published after it exists. An existing consumer
    # keeps its position.
    loyalty_deliver_policy: Literal["all", "new"] = "all"
    loyalty_max_deliver: int = Field(default=5, ge=1)
    # The most events one batch (one transaction) holds.
    loyalty_batch_size: int = Field(default=100, ge=1)
    # Bounds each step of handling one event: the database transaction, and the dead-letter publish.
    loyalty_handler_timeout_seconds: float = Field(default=10.0, gt=0)
    # The broker redelivers an unacked message after this; must exceed the handler's worst case.
    loyalty_ack_wait_seconds: float = Field(default=30.0, gt=0)
    # Retry delays grow 2x per delivery from the base, up to the cap, with jitter.
    loyalty_retry_base_seconds: float = Field(default=1.0, gt=0)
    loyalty_retry_max_seconds: float = Field(default=60.0, gt=0)
    # Housekeeping: how long a processed event's id is remembered. Must exceed the redelivery
    # horizon (checked below): a copy of the event arriving after its row is gone would award twice.
    loyalty_dedupe_retention_seconds: float = Field(default=30 * 24 * 3600.0, gt=0)
    # How often the dedupe purge runs (in batches, each its own short transaction).
    loyalty_dedupe_purge_interval_seconds: float = Field(default=3600.0, gt=0)

    def order_events_consumer(self) -> ConsumerSpec:
        return ConsumerSpec(
            durable=self.loyalty_consumer,
            stream=ORDERS_STREAM,
            subject=ORDER_CREATED_SUBJECT,
            deliver_policy=self.loyalty_deliver_policy,
            max_deliver=self.loyalty_max_deliver,
            handler_timeout_seconds=self.loyalty_handler_timeout_seconds,
            ack_wait_seconds=self.loyalty_ack_wait_seconds,
            retry_base_seconds=self.loyalty_retry_base_seconds,
            retry_max_seconds=self.loyalty_retry_max_seconds,
            batch_size=self.loyalty_batch_size,
            duplicate_window_seconds=self.nats_duplicate_window_seconds,
        )

    @model_validator(mode="after")
    def _dedupe_outlives_every_redelivery(self) -> Self:
        """Refuse to forget an event id while a copy of that event may still be delivered."""
        if self.loyalty_dedupe_retention_seconds <= REDELIVERY_HORIZON_SECONDS:
            raise ValueError(
                f"loyalty_dedupe_retention_seconds ({self.loyalty_dedupe_retention_seconds:g}) must exceed the "
                f"redelivery horizon ({REDELIVERY_HORIZON_SECONDS:g} s = 2 x the ORDERS stream's max age + the "
                "DEAD_LETTERS stream's max age): until then a copy of a processed event may still arrive"
            )
        return self

    @model_validator(mode="after")
    def _consumer_is_consistent(self) -> Self:
        """Refuse at start-up what the consumer would refuse later (ack_wait too short, say)."""
        self.order_events_consumer()
        return self
