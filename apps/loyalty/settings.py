"""Loyalty's own settings, on top of the shared ones: its OrderCreated consumer
(ORDERFLOW_LOYALTY_CONSUMER, ORDERFLOW_LOYALTY_MAX_DELIVER, ...) and the dedupe table's housekeeping."""

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from orderflow_contracts.streams import ORDER_CREATED_SUBJECT, ORDERS_STREAM
from orderflow_kit.consumer_settings import ConsumerSettings
from orderflow_kit.nats import REDELIVERY_HORIZON_SECONDS
from orderflow_kit.settings import Settings


class LoyaltyConsumer(ConsumerSettings):
    """The durable consumer of OrderCreated. A new one starts with "all" by default: it replays the
    stream's history, which the dedupe table makes safe."""

    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_LOYALTY_")
    stream = ORDERS_STREAM
    subject = ORDER_CREATED_SUBJECT

    consumer: str = "loyalty"


class LoyaltySettings(Settings):
    order_events: LoyaltyConsumer = Field(default_factory=LoyaltyConsumer)
    # Housekeeping: how long a processed event's id is remembered. Must exceed the redelivery
    # horizon (checked below): a copy of the event arriving after its row is gone would award twice.
    loyalty_dedupe_retention_seconds: float = Field(default=30 * 24 * 3600.0, gt=0)
    # How often the dedupe purge runs (in batches, each its own short transaction).
    loyalty_dedupe_purge_interval_seconds: float = Field(default=3600.0, gt=0)

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
