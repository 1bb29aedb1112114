"""The durable JetStream pull consumer every orderflow service uses, declared in FastStream's own
idiom: one subscriber (`broker.subscriber(subject, stream=..., durable=..., pull_sub=PullSub(...))`)
whose payload is the event, typed, read by the service's reader (orderflow_contracts.events). A
service declares a `DurableConsumer` (its settings, its reader, its batch handler) and runs it with
`consume`; the rest is the same for everyone, one policy per module, as Watermill's middlewares:

- settings (orderflow_kit.consumer_settings): one model for every consumer, and the broker's copy
  of the durable consumer kept equal to it;
- pulls (orderflow_kit.pull_requests): one kind of pull request, whose messages are handed over
  as soon as the stream stores them; an idle consumer asks once a second;
- batches (orderflow_kit.batches): the messages of one pull are handled together, in one
  transaction, never waiting for a batch to fill; a message that fails its batch fails alone;
- retry classification (orderflow_kit.failures): a failure is permanent (dead-lettered at once)
  or not (NAKed with a growing delay until max_deliver, then dead-lettered as exhausted);
- dead letters (orderflow_kit.dead_letters): stored in DEAD_LETTERS with why, then acked;
- dedupe belongs to the handler, in its own transaction (loyalty.dedupe); a handler whose effect
  is idempotent needs none (inventory's confirmations).

Per message, once its batch has run: ack a success (after the commit, as the handler returned);
for a failure, do what `failures.after_failure` says. A message that cannot be read (not a
CloudEvent, a payload failing validation) fails alone with its error, without reaching the
handler: the reader runs as FastStream's decoder, which hands the error over instead of raising it.

A dead letter is acked only once the broker has stored it; if storing fails, the message stays
unacked and comes back after ack_wait. So nothing is lost, and a bad message never holds up the
ones behind it. Every message logs exactly one line: `event consumed` with the outcome (the
handler's, or `retry` / `dead-lettered`), the consumer, ce_id, ce_subject, stream_seq, deliveries,
and the request id that created the event.

And every message counts once in `orderflow_consumer_events_total` by outcome: processed,
duplicate (the handler's "duplicate"), retried or dead_lettered. The durable consumer's backlog
(pending, ack pending, redelivered) and its dead letters stored are asked of the broker when
Prometheus scrapes (orderflow_kit.metrics), on the consumer's own connection.

FastStream traps handled here: its default handler policy (REJECT_ON_ERROR) would TERM a message
on any exception, never to be redelivered, so the consumer acks and NAKs each message itself
(AckPolicy.MANUAL) and lets no error escape; a decoder that raised would leave the message to
FastStream, unsettled; the payload is not cast again by pydantic (`serializer=None`): the reader
has validated it; and an existing durable consumer is reused with its old settings unless it is
updated (`ensure_consumer`).

Traced (orderflow_kit.tracing), when on: FastStream's telemetry gives each message a process
span, a child of the context its traceparent carries; each message is settled (ack, NAK, dead
letter) and logged in its own task, in that span; the batch's span is orderflow_kit.batches'
(docs/observability.md, "Traces")."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import nats.errors
import nats.js.errors
import structlog
from faststream import AckPolicy, StreamMessage
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from faststream.nats.subscriber import PullStreamSubscriber
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import NoOpMeterProvider
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from orderflow_contracts.cloudevents import REQUEST_ID
from orderflow_kit import faults, tracing
from orderflow_kit.batches import BatchHandler, BatchRunner, Delivery, PullBatches, Received, Result
from orderflow_kit.consumer_settings import ConsumerSettings, consumer_config, ensure_consumer
from orderflow_kit.dead_letters import (
    Failed,
    FirstFailures,
    count_dead_letters,
    dead_letter_filter,
    publish_dead_letter,
)
from orderflow_kit.failures import Failure, RetryLater, after_failure, describe, error_class
from orderflow_kit.metrics import LAG_BUCKETS, Source, child, measured_on_scrape, observe_seconds
from orderflow_kit.nats import ensure_streams, raise_if_cancelled
from orderflow_kit.pull_requests import fetch_as_soon_as_stored
from orderflow_kit.settings import Settings

log = structlog.get_logger()

# How long to wait between attempts to reach NATS when the consumer starts while it is down.
CONNECT_RETRY_SECONDS = 1.0
# The longest one pull waits (orderflow_kit.pull_requests: its request returns as soon as a message is
# stored, so this is not a latency): how often an idle consumer asks again, about 1 ms of CPU a
# second for it and for nats-server, and how long a request lost with a NATS restart goes unnoticed.
PULL_WAIT_SECONDS = 1.0

# What NATS being away (or not ready yet) looks like while the consumer sets itself up.
NATS_UNREACHABLE: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    nats.errors.NoServersError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.js.errors.ServiceUnavailableError,
)

EVENTS = Counter(
    "orderflow_consumer_events_total",
    "Messages a durable consumer settled, by outcome: processed, duplicate, retried, dead_lettered",
    ["consumer", "outcome"],
)
EVENT_LAG = Histogram(
    "orderflow_consumer_event_lag_seconds",
    "From the broker storing a message to the consumer settling it as processed or duplicate",
    ["consumer"],
    buckets=LAG_BUCKETS,
)
# The handler's outcome that counts as a duplicate; every other success is `processed`.
DUPLICATE = "duplicate"
OUTCOMES = ("processed", "duplicate", "retried", "dead_lettered")

T = TypeVar("T")

# Reads a message (its headers and body) into the event its handler takes, or raises: a permanent
# failure (orderflow_kit.failures) when the message is bad (orderflow_contracts.events.read_order_created).
Reader = Callable[[dict[str, str] | None, bytes], T]


@dataclass(frozen=True)
class DurableConsumer(Generic[T]):
    """A service's durable consumer: its settings, how its messages are read, and its batch handler,
    made once connected from the consumer's own JetStream context, so that a handler that publishes
    does so on the connection it consumes from, open until the messages in flight are done."""

    settings: ConsumerSettings
    read: Reader[T]
    handler_for: Callable[[JetStreamContext], BatchHandler[T]]


class Receiver(Generic[T]):
    """What the subscriber does with each message FastStream hands over: join its pull's batch,
    then settle the message with the broker by its result."""

    def __init__(self, settings: ConsumerSettings, handler: BatchHandler[T], js: JetStreamContext) -> None:
        self._settings = settings
        self._js = js
        self._batches = PullBatches(BatchRunner(settings, handler).handle)
        self._first_failures = FirstFailures()

    async def receive(self, reading: T | Exception, message: Msg) -> None:
        """Handle and settle `message`; `reading` is its event, or the error that makes it unreadable.
        A delivery the `consumer_fail_first` fault flag fails never reaches the handler."""
        injected = self._injected_failure(message)
        result: Result | None
        if injected is not None:
            result = injected
        elif isinstance(reading, Exception):
            result = reading
        else:
            # With tracing on, FastStream's telemetry has made this message's process span current.
            context = otel_context.get_current() if tracing.enabled() else None
            result = await self._batches.add(Delivery(Received(reading, message.headers or {}), message, context))
        if result is None:
            return  # the consumer stopped before its batch ran: unacked, the broker redelivers it after ack_wait
        try:
            await self._settle(message, result)
        except Exception as error:
            # Left unacked: the broker redelivers it after ack_wait.
            log.error("event not settled", **_described(self._settings, message), error=str(error))

    def _injected_failure(self, message: Msg) -> Exception | None:
        deliveries = message.metadata.num_delivered
        if faults.should_fail_attempt(self._settings.consumer, deliveries):
            return faults.InjectedFailure(f"consumer_fail_first: delivery {deliveries} fails on purpose")
        return None

    async def _settle(self, message: Msg, result: Result) -> None:
        if isinstance(result, Exception):
            await self._settle_failure(message, result)
            return
        await message.ack()
        self._first_failures.forget(message)
        consumer = self._settings.consumer
        child(EVENTS, consumer, "duplicate" if result == DUPLICATE else "processed").inc()
        observe_seconds(EVENT_LAG, max(0.0, time.time() - message.metadata.timestamp.timestamp()), consumer)
        log.info("event consumed", **_described(self._settings, message), outcome=result)

    async def _settle_failure(self, message: Msg, error: Exception) -> None:
        """What to do is `failures.after_failure`'s decision; this applies it to the broker."""
        first_failure_at = self._first_failures.failed(message)
        verdict = after_failure(error, message.metadata.num_delivered, self._settings)
        if isinstance(verdict, RetryLater):
            await self._retry_later(message, error, verdict)
        else:
            await self._dead_letter(
                message, Failed(verdict.reason, verdict.error, error_class(error), first_failure_at)
            )

    async def _retry_later(self, message: Msg, error: Exception, retry: RetryLater) -> None:
        await message.nak(delay=retry.delay_seconds)
        child(EVENTS, self._settings.consumer, "retried").inc()
        log.warning(
            "event consumed",
            **_described(self._settings, message),
            outcome="retry",
            error=describe(error),
            error_class=error_class(error),
            retry_in_seconds=round(retry.delay_seconds, 3),
            # An outage is expected and needs no traceback; anything else is a bug to see.
            exc_info=error if retry.failure is Failure.UNFORESEEN else False,
        )

    async def _dead_letter(self, message: Msg, failed: Failed) -> None:
        """Store it in DEAD_LETTERS, then ack: it no longer holds up the messages behind it. If the
        store fails, the exception leaves the message unacked and the broker redelivers it."""
        trace.get_current_span().set_attribute("orderflow.dead_lettered", failed.reason.value)
        await publish_dead_letter(self._js, message, consumer=self._settings.consumer, failed=failed)
        await message.ack()
        self._first_failures.forget(message)
        child(EVENTS, self._settings.consumer, "dead_lettered").inc()
        log.warning(
            "event consumed",
            **_described(self._settings, message),
            outcome="dead-lettered",
            reason=failed.reason.value,
            error=failed.error,
            error_class=failed.error_class,
        )


def _described(settings: ConsumerSettings, message: Msg) -> dict[str, object]:
    """What every log line about a consumed message says of it."""
    headers = message.headers or {}
    metadata = message.metadata
    return {
        "consumer": settings.consumer,
        "ce_id": headers.get("ce-id"),
        "ce_subject": headers.get("ce-subject"),
        # The request that created the event, so one id follows it from the gateway to here.
        "request_id": headers.get(REQUEST_ID),
        "stream_seq": metadata.sequence.stream,
        "deliveries": metadata.num_delivered,
    }


def subscribe(broker: NatsBroker, consumer: DurableConsumer[T], js: JetStreamContext) -> PullStreamSubscriber:
    """Declare the consumer's FastStream subscriber on `broker`, connected as `js`: a pull
    subscriber of the durable consumer whose payload is the event, as the consumer's reader reads it."""
    settings = consumer.settings
    receiver = Receiver(settings, consumer.handler_for(js), js)
    subscriber = broker.subscriber(
        settings.subject,
        stream=JStream(settings.stream, declare=False),
        durable=settings.consumer,
        config=consumer_config(settings),
        pull_sub=PullSub(batch_size=settings.batch_size, timeout=PULL_WAIT_SECONDS),
        ack_policy=AckPolicy.MANUAL,
        decoder=_reading(consumer.read),
    )

    @subscriber
    async def received(decoded: _Decoded[T]) -> None:
        await receiver.receive(decoded.event, decoded.message)

    return subscriber


def fetch_as_soon_as_stored_from_now_on(subscriber: PullStreamSubscriber) -> None:
    """Once the broker has started `subscriber`, its pulls are pull_requests'. Call it right after
    `broker.start()`: nothing in between yields to the event loop, so the loop FastStream started
    has not fetched yet."""
    subscription = subscriber.subscription
    assert subscription is not None, "the broker has not started the subscriber"
    subscription.fetch = fetch_as_soon_as_stored(subscription)  # type: ignore[method-assign]


@dataclass(frozen=True, slots=True)
class _Decoded(Generic[T]):
    """The subscriber's payload: the event, or the error that makes it unreadable, with the NATS
    message to settle. The message comes with the payload, not as a FastStream `Context`
    parameter: fast-depends resolves those in a worker thread, a thread hop per message."""

    event: T | Exception
    message: Msg


def _reading(read: Reader[T]) -> Callable[[StreamMessage[Any]], Awaitable[_Decoded[T]]]:
    """A FastStream decoder: the message's event, or the error that makes it unreadable, handed over
    (raised, FastStream would log it and leave the message unsettled)."""

    async def decode(message: StreamMessage[Any]) -> _Decoded[T]:
        raw: Msg = message.raw_message
        try:
            return _Decoded(read(raw.headers, raw.data), raw)
        except Exception as error:
            return _Decoded(error, raw)

    return decode


async def consume(consumer: DurableConsumer[T], settings: Settings, subscribed: asyncio.Event | None = None) -> None:
    """Run the consumer until cancelled; then stop fetching, let the in-flight messages finish (up
    to `settings.shutdown_grace_seconds`) and close the connection. NATS may be down when this
    starts: it keeps trying, and reconnects by itself whenever the connection drops later.
    `subscribed` is set once the durable consumer exists and messages are being fetched
    (readiness.consumer_started)."""
    own = consumer.settings
    provider = tracing.tracer_provider()
    broker = NatsBroker(
        settings.nats_url,
        # Each message's process span, a child of its creation context (its traceparent header).
        middlewares=()
        if provider is None
        else (NatsTelemetryMiddleware(tracer_provider=provider, meter_provider=NoOpMeterProvider()),),
        name=own.consumer,
        max_reconnect_attempts=-1,  # reconnect forever: nats-py gives up after ~2 minutes by default
        reconnect_time_wait=1,
        connect_timeout=2,
        graceful_timeout=settings.shutdown_grace_seconds,
        # Through the standard logging set-up: FastStream's per-message INFO lines stay quiet,
        # its errors (a failed ack, say) still show.
        logger=logging.getLogger(f"{own.consumer}.broker"),
        serializer=None,
    )
    for outcome in OUTCOMES:  # every series exists from the start, at 0: rate() and alerts see the first one
        child(EVENTS, own.consumer, outcome)
    try:
        js = await _set_up(broker, own, settings.nats_duplicate_window_seconds)
        subscriber = subscribe(broker, consumer, js)
        await broker.start()
        fetch_as_soon_as_stored_from_now_on(subscriber)
        raise_if_cancelled()
        log.info("consuming", stream=own.stream, subject=own.subject, consumer=own.consumer)
        if subscribed is not None:
            subscribed.set()
        with measured_on_scrape({f"consumer {own.consumer}": consumer_gauges(js, own)}):
            await asyncio.Event().wait()
    finally:
        await broker.stop()


def consumer_gauges(js: JetStreamContext, settings: ConsumerSettings) -> Source:
    """The durable consumer's backlog as the broker counts it, and its dead letters stored."""

    async def measure() -> list[Metric]:
        info, dead = await asyncio.gather(
            js.consumer_info(settings.stream, settings.consumer),
            count_dead_letters(js, subject=dead_letter_filter(settings.consumer)),
        )
        families: list[Metric] = []
        for name, documentation, value in (
            (
                "orderflow_consumer_pending_messages",
                "Messages in the stream not yet delivered to the consumer",
                info.num_pending,
            ),
            ("orderflow_consumer_ack_pending_messages", "Messages delivered and not yet acked", info.num_ack_pending),
            (
                "orderflow_consumer_redelivered_messages",
                "Messages delivered more than once, not yet acked",
                info.num_redelivered,
            ),
            ("orderflow_dead_letters", "Dead letters of the consumer stored in DEAD_LETTERS now", sum(dead.values())),
        ):
            family = GaugeMetricFamily(name, documentation, labels=["consumer"])
            family.add_metric([settings.consumer], value or 0)
            families.append(family)
        return families

    return measure


async def _set_up(broker: NatsBroker, settings: ConsumerSettings, duplicate_window_seconds: float) -> JetStreamContext:
    """Connect, and create the streams and the durable consumer; retried until NATS answers."""
    reported = False
    while True:
        raise_if_cancelled()
        try:
            connection = await broker.connect()
            js = connection.jetstream(timeout=settings.handler_timeout_seconds)
            await ensure_streams(js, duplicate_window_seconds)
            await ensure_consumer(js, settings)
        except NATS_UNREACHABLE as error:
            if not reported:
                log.warning("cannot reach NATS yet; retrying", consumer=settings.consumer, error=describe(error))
                reported = True
            await broker.stop()
            await asyncio.sleep(CONNECT_RETRY_SECONDS)
        else:
            if reported:
                log.info("NATS reached", consumer=settings.consumer)
            return js
