"""Loyalty's own settings (ORDERFLOW_LOYALTY_*), on top of the shared ones."""

from typing import Literal, Self

from pydantic import Field, model_validator

from orderflow_kit.settings import Settings


class LoyaltySettings(Settings):
    # The durable JetStream consumer's name; also names its dead-letter subject (dlq.<consumer>.>).
    loyalty_consumer: str = "loyalty"
    # Where a NEW durable consumer starts: "all" replays the stream's history (the dedupe table
    # makes that safe); "new" only sees events published after it exists. An existing consumer
    # keeps its position.
    loyalty_deliver_policy: Literal["all", "new"] = "all"
    loyalty_max_deliver: int = Field(default=5, ge=1)
    loyalty_batch_size: int = Field(default=10, ge=1)
    # Bounds each step of handling one event: the database transaction, and the dead-letter publish.
    loyalty_handler_timeout_seconds: float = Field(default=10.0, gt=0)
    # The broker redelivers an unacked message after this; must exceed the handler's worst case.
    loyalty_ack_wait_seconds: float = Field(default=30.0, gt=0)
    # Retry delays grow 2x per delivery from the base, up to the cap, with jitter.
    loyalty_retry_base_seconds: float = Field(default=1.0, gt=0)
    loyalty_retry_max_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _ack_wait_covers_the_worst_case(self) -> Self:
        """An ack sent after ack_wait may ack a redelivery instead: refuse such a configuration."""
        worst_case = 2 * self.loyalty_handler_timeout_seconds
        if self.loyalty_ack_wait_seconds <= worst_case:
            raise ValueError(
                f"loyalty_ack_wait_seconds ({self.loyalty_ack_wait_seconds}) must exceed the handler's worst case "
                f"(2 x loyalty_handler_timeout_seconds = {worst_case})"
            )
        return self
