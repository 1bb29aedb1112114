"""A durable JetStream consumer's settings: one model for every consumer, each service reading its
own from environment variables of its own prefix (`ORDERFLOW_LOYALTY_MAX_DELIVER`,
`ORDERFLOW_INVENTORY_MAX_DELIVER`, ...), and the broker's copy of the consumer kept equal to them
(`ensure_consumer`: an existing durable consumer is otherwise reused with its old settings)."""

from typing import ClassVar, Literal, Self

from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsumerSettings(BaseSettings):
    """One durable pull consumer: where it reads, fixed in code by the service's subclass (`stream`,
    `subject`, and `env_prefix`, the prefix of its environment variables), and how patient it is
    with failures, set by the environment:

        class LoyaltyConsumer(ConsumerSettings):
            model_config = SettingsConfigDict(env_prefix="ORDERFLOW_LOYALTY_")
            stream = ORDERS_STREAM
            subject = ORDER_CREATED_SUBJECT
            consumer: str = "loyalty"
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    stream: ClassVar[str]
    subject: ClassVar[str]

    # The durable consumer's name; also names its dead letters (dlq.<consumer>.<subject>).
    consumer: str
    # Where a NEW durable consumer starts: "all" replays the stream's history, "new" only sees
    # what is published after it exists. An existing consumer keeps its position.
    deliver_policy: Literal["all", "new"] = "all"
    max_deliver: int = Field(default=5, ge=1)
    # The most events one batch (one transaction) holds.
    batch_size: int = Field(default=100, ge=1)
    # Bounds each step of handling one event: the handler (its transaction), and the dead-letter publish.
    handler_timeout_seconds: float = Field(default=10.0, gt=0)
    # The broker redelivers an unacked message after this; must exceed the handler's worst case.
    ack_wait_seconds: float = Field(default=30.0, gt=0)
    # Retry delays grow 2x per delivery from the base, up to the cap, with jitter (failures.retry_delay).
    retry_base_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _ack_wait_outlasts_the_handler(self) -> Self:
        """An ack sent after ack_wait may ack a redelivery instead: refuse such settings at start-up."""
        worst_case = 2 * self.handler_timeout_seconds
        if self.ack_wait_seconds <= worst_case:
            raise ValueError(
                f"ack_wait_seconds ({self.ack_wait_seconds}) must exceed the handler's worst case "
                f"(2 x handler_timeout_seconds = {worst_case})"
            )
        return self


def consumer_config(settings: ConsumerSettings) -> api.ConsumerConfig:
    return api.ConsumerConfig(
        name=settings.consumer,
        durable_name=settings.consumer,
        filter_subject=settings.subject,
        deliver_policy=api.DeliverPolicy(settings.deliver_policy),
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait_seconds,
        max_deliver=settings.max_deliver,
    )


async def ensure_consumer(js: JetStreamContext, settings: ConsumerSettings) -> api.ConsumerInfo:
    """Create the durable consumer, or bring an existing one to `consumer_config`.

    JetStream (and FastStream's subscriber) reuse an existing durable consumer as it is, so a
    changed max_deliver or ack_wait would otherwise be silently ignored. The deliver policy only
    matters at creation and the server refuses to change it, so an existing consumer keeps its own."""
    config = consumer_config(settings)
    try:
        existing = await js.consumer_info(settings.stream, settings.consumer)
    except NotFoundError:
        pass
    else:
        config.deliver_policy = existing.config.deliver_policy
    # A create request for an existing consumer updates it (nats-server >= 2.10).
    return await js.add_consumer(settings.stream, config)
