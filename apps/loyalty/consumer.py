"""The OrderCreated consumer: a durable JetStream pull consumer (FastStream) that awards points.

Per message: read it, award the points in one transaction (awarding_points), and only then ack.
When that fails, `failures` decides: a bad message is dead-lettered at once; anything else is
NAKed with a growing delay until its last delivery (max_deliver), then dead-lettered as
exhausted. A dead letter is acked once it is stored, so it never blocks the messages behind it.

FastStream's default handler policy (REJECT_ON_ERROR) would TERM the message on any exception,
so the handler acks and NAKs explicitly (AckPolicy.MANUAL) and never lets an error escape. For
the same reason FastStream must not decode the body itself: a body that is not JSON would fail
before the handler could dead-letter it."""

import asyncio
import logging
from typing import Any

import structlog
from faststream import AckPolicy, StreamMessage
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError
from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty.awarding_points import award_points, read_order_created
from loyalty.failures import describe, is_dependency_failure, is_permanent, retry_delay
from loyalty.settings import LoyaltySettings
from orderflow_contracts.cloudevents import REQUEST_ID
from orderflow_contracts.streams import ORDER_CREATED_SUBJECT, ORDERS_STREAM
from orderflow_kit.dead_letters import Reason, publish_dead_letter
from orderflow_kit.nats import ensure_streams

log = structlog.get_logger()

# How long one pull waits for messages before asking again.
FETCH_TIMEOUT_SECONDS = 5.0


def consumer_config(settings: LoyaltySettings) -> api.ConsumerConfig:
    return api.ConsumerConfig(
        name=settings.loyalty_consumer,
        durable_name=settings.loyalty_consumer,
        filter_subject=ORDER_CREATED_SUBJECT,
        deliver_policy=api.DeliverPolicy(settings.loyalty_deliver_policy),
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=settings.loyalty_ack_wait_seconds,
        max_deliver=settings.loyalty_max_deliver,
    )


async def ensure_consumer(js: JetStreamContext, settings: LoyaltySettings) -> api.ConsumerInfo:
    """Create the durable consumer, or bring an existing one to `consumer_config`.

    JetStream (and FastStream's subscriber) reuse an existing durable consumer as it is, so a
    changed max_deliver or ack_wait would otherwise be silently ignored. The deliver policy only
    matters at creation and the server refuses to change it, so an existing consumer keeps its own."""
    config = consumer_config(settings)
    try:
        existing = await js.consumer_info(ORDERS_STREAM, settings.loyalty_consumer)
    except NotFoundError:
        pass
    else:
        config.deliver_policy = existing.config.deliver_policy
    # A create request for an existing consumer updates it (nats-server >= 2.10).
    return await js.add_consumer(ORDERS_STREAM, config)


async def undecoded(message: StreamMessage[Any]) -> bytes:
    """FastStream decoder that hands the body over untouched: reading it is the handler's job."""
    return message.body


class OrderCreatedHandler:
    def __init__(self, settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext) -> None:
        self._settings = settings
        self._engine = engine
        self._js = js

    async def handle(self, message: NatsMessage) -> None:
        """Ack, NAK or dead-letter-then-ack every message; log one line saying which."""
        raw = message.raw_message
        metadata = raw.metadata
        headers = raw.headers or {}
        context: dict[str, Any] = {
            "ce_id": headers.get("ce-id"),
            # The request that created the order, so one id follows it from the gateway to here.
            "request_id": headers.get(REQUEST_ID),
            "stream_seq": metadata.sequence.stream,
            "deliveries": metadata.num_delivered,
        }
        try:
            event = read_order_created(raw.headers, raw.data)
            context["order_id"] = str(event.order.order_id)
            async with asyncio.timeout(self._settings.loyalty_handler_timeout_seconds):
                outcome = await award_points(self._engine, event)
        except Exception as error:
            await self._handle_failure(message, error, context)
            return
        await message.ack()
        log.info("order event", outcome=outcome.value, **context)

    async def _handle_failure(self, message: NatsMessage, error: Exception, context: dict[str, Any]) -> None:
        """The classification lives in `failures`; this applies it to the broker."""
        settings = self._settings
        if is_permanent(error):
            await self._dead_letter(message, Reason.PERMANENT, describe(error), context)
        elif message.raw_message.metadata.num_delivered < settings.loyalty_max_deliver:
            await self._retry_later(message, error, context)
        else:
            last_error = f"max_deliver ({settings.loyalty_max_deliver}) exhausted; last error: {describe(error)}"
            await self._dead_letter(message, Reason.EXHAUSTED, last_error, context)

    async def _retry_later(self, message: NatsMessage, error: Exception, context: dict[str, Any]) -> None:
        settings = self._settings
        delay = retry_delay(
            message.raw_message.metadata.num_delivered,
            settings.loyalty_retry_base_seconds,
            settings.loyalty_retry_max_seconds,
        )
        await message.nack(delay=delay)
        log.warning(
            "order event",
            outcome="retry",
            error=describe(error),
            retry_in_seconds=round(delay, 3),
            # A database outage is expected and needs no traceback; anything else is a bug to see.
            exc_info=not is_dependency_failure(error),
            **context,
        )

    async def _dead_letter(self, message: NatsMessage, reason: Reason, error: str, context: dict[str, Any]) -> None:
        """Store it in DEAD_LETTERS, then ack: it no longer holds up the messages behind it. If the
        store fails, the exception leaves the message unacked and the broker redelivers it."""
        await publish_dead_letter(
            self._js, message.raw_message, consumer=self._settings.loyalty_consumer, reason=reason, error=error
        )
        await message.ack()
        log.warning("order event", outcome="dead-lettered", reason=reason.value, error=error, **context)


async def consume_order_events(settings: LoyaltySettings, engine: AsyncEngine) -> None:
    """Run the consumer until cancelled; then stop fetching, let the in-flight messages finish
    (up to shutdown_grace_seconds) and close the connection."""
    broker = NatsBroker(
        settings.nats_url,
        name=f"loyalty-{settings.loyalty_consumer}",
        max_reconnect_attempts=-1,  # reconnect forever: nats-py gives up after ~2 minutes by default
        reconnect_time_wait=1,
        connect_timeout=2,
        graceful_timeout=settings.shutdown_grace_seconds,
        # Through the standard logging set-up: FastStream's per-message INFO lines stay quiet,
        # its errors (a failed ack, say) still show.
        logger=logging.getLogger("loyalty.broker"),
    )
    try:
        connection = await broker.connect()
        js = connection.jetstream(timeout=settings.loyalty_handler_timeout_seconds)
        await ensure_streams(js)
        await ensure_consumer(js, settings)
        handler = OrderCreatedHandler(settings, engine, js)
        broker.subscriber(
            ORDER_CREATED_SUBJECT,
            stream=JStream(ORDERS_STREAM, declare=False),
            durable=settings.loyalty_consumer,
            config=consumer_config(settings),
            pull_sub=PullSub(batch_size=settings.loyalty_batch_size, timeout=FETCH_TIMEOUT_SECONDS),
            ack_policy=AckPolicy.MANUAL,
            decoder=undecoded,
        )(handler.handle)
        await broker.start()
        log.info("consuming", stream=ORDERS_STREAM, consumer=settings.loyalty_consumer)
        await asyncio.Event().wait()
    finally:
        await broker.stop()
