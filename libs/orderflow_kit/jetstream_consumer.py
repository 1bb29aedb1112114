"""The durable JetStream pull consumer every orderflow service uses: a service supplies a handler
(what one message means to it), this module does the rest, the same way for everyone. A handler
that publishes gets the consumer's own JetStream context (`consume_and_publish`).

Per message: run the handler, bounded by `handler_timeout_seconds`; when it returns, ack, and
log one line with the outcome it returned. When it raises, `failures.classify` decides:

- PERMANENT: dead-letter at once (orderflow_kit.dead_letters), then ack;
- anything else: NAK with a growing delay (`failures.retry_delay`) until the last delivery
  (max_deliver), which is dead-lettered as exhausted, then acked.

A dead letter is acked only once the broker has stored it; if storing fails, the message stays
unacked and comes back after ack_wait. So nothing is lost, and a bad message never holds up the
ones behind it. Every message logs exactly one line: `event consumed` with the outcome (the
handler's, or `retry` / `dead-lettered`), the consumer, ce_id, stream_seq, deliveries, the
request id that created the event, and whatever the handler bound with
`structlog.contextvars.bind_contextvars` (FastStream runs each message in a task of its own, so
those end with the message).

FastStream traps handled here: its default handler policy (REJECT_ON_ERROR) would TERM a message
on any exception, never to be redelivered, so the handler acks and NAKs itself (AckPolicy.MANUAL)
and lets no error escape; it must not decode the body either (a body that is not JSON would fail
before the handler could dead-letter it); and an existing durable consumer is reused with its old
settings unless it is updated (`ensure_consumer`)."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import nats.errors
import nats.js.errors
import structlog
from faststream import AckPolicy, StreamMessage
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from orderflow_contracts.cloudevents import REQUEST_ID
from orderflow_kit import faults
from orderflow_kit.dead_letters import Failed, Reason, publish_dead_letter
from orderflow_kit.failures import Failure, classify, describe, error_class, retry_delay
from orderflow_kit.nats import DUPLICATE_WINDOW_SECONDS, ensure_streams

log = structlog.get_logger()

# How long one pull waits for messages before asking again.
FETCH_TIMEOUT_SECONDS = 5.0
# How long to wait between attempts to reach NATS when the consumer starts while it is down.
CONNECT_RETRY_SECONDS = 1.0
# First failures remembered per consumer (see FirstFailures); far more than ever fail at once.
REMEMBERED_FAILURES = 10_000

# What NATS being away (or not ready yet) looks like while the consumer sets itself up.
NATS_UNREACHABLE: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    nats.errors.NoServersError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.js.errors.ServiceUnavailableError,
)

# Handles one message and returns its outcome for the log line ("awarded", "duplicate", ...).
# Raising is how it fails: see the module docstring for what happens then.
Handler = Callable[[Msg], Awaitable[str]]
# Makes the handler once the consumer is connected, from the consumer's own JetStream context: a
# handler that publishes (before its message is acked) does so on the connection it consumes from.
HandlerFactory = Callable[[JetStreamContext], Handler]


@dataclass(frozen=True)
class ConsumerSpec:
    """One durable pull consumer: where it reads, and how patient it is with failures."""

    durable: str  # also names its dead letters: dlq.<durable>.<subject>
    stream: str
    subject: str
    # Where a NEW durable consumer starts: "all" replays the stream's history, "new" only sees
    # what is published after it exists. An existing consumer keeps its position.
    deliver_policy: Literal["all", "new"]
    max_deliver: int
    # Bounds each step of handling one message: the handler, and the dead-letter publish.
    handler_timeout_seconds: float
    # The broker redelivers an unacked message after this; must exceed the handler's worst case.
    ack_wait_seconds: float
    retry_base_seconds: float
    retry_max_seconds: float
    batch_size: int = 10
    # The streams' duplicate window, should this consumer be the one that creates them.
    duplicate_window_seconds: float = DUPLICATE_WINDOW_SECONDS

    def __post_init__(self) -> None:
        """An ack sent after ack_wait may ack a redelivery instead: refuse such a configuration."""
        worst_case = 2 * self.handler_timeout_seconds
        if self.ack_wait_seconds <= worst_case:
            raise ValueError(
                f"ack_wait_seconds ({self.ack_wait_seconds}) must exceed the handler's worst case "
                f"(2 x handler_timeout_seconds = {worst_case})"
            )
        if self.max_deliver < 1:
            raise ValueError(f"max_deliver must be at least 1, got {self.max_deliver}")


def consumer_config(spec: ConsumerSpec) -> api.ConsumerConfig:
    return api.ConsumerConfig(
        name=spec.durable,
        durable_name=spec.durable,
        filter_subject=spec.subject,
        deliver_policy=api.DeliverPolicy(spec.deliver_policy),
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait_seconds,
        max_deliver=spec.max_deliver,
    )


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> api.ConsumerInfo:
    """Create the durable consumer, or bring an existing one to `consumer_config`.

    JetStream (and FastStream's subscriber) reuse an existing durable consumer as it is, so a
    changed max_deliver or ack_wait would otherwise be silently ignored. The deliver policy only
    matters at creation and the server refuses to change it, so an existing consumer keeps its own."""
    config = consumer_config(spec)
    try:
        existing = await js.consumer_info(spec.stream, spec.durable)
    except NotFoundError:
        pass
    else:
        config.deliver_policy = existing.config.deliver_policy
    # A create request for an existing consumer updates it (nats-server >= 2.10).
    return await js.add_consumer(spec.stream, config)


class FirstFailures:
    """When each failing message (by stream sequence) first failed here, kept across its
    redeliveries so that its dead letter can say how long it has been failing.

    Only this process remembers: when another replica, or this process before a restart, saw the
    first failure, the time the message was stored in the stream stands in for it (never later
    than the real first failure). Bounded: the oldest entries go first."""

    def __init__(self, capacity: int = REMEMBERED_FAILURES) -> None:
        self._first: dict[int, datetime] = {}
        self._capacity = capacity

    def failed(self, message: Msg) -> datetime:
        """Note a failure of `message` and return when it first failed."""
        sequence = message.metadata.sequence.stream
        first = self._first.get(sequence)
        if first is None:
            first = datetime.now(UTC) if message.metadata.num_delivered <= 1 else _stored_at(message)
            self._first[sequence] = first
            if len(self._first) > self._capacity:
                del self._first[next(iter(self._first))]
        return first

    def forget(self, message: Msg) -> None:
        self._first.pop(message.metadata.sequence.stream, None)


class MessageHandling:
    """Applies the handler's result, or the classification of its failure, to the broker."""

    def __init__(self, spec: ConsumerSpec, handler: Handler, js: JetStreamContext) -> None:
        self._spec = spec
        self._handler = handler
        self._js = js
        self._first_failures = FirstFailures()

    async def handle(self, message: NatsMessage) -> None:
        """Ack, NAK or dead-letter-then-ack every message; log one line saying which."""
        raw: Msg = message.raw_message
        metadata = raw.metadata
        headers = raw.headers or {}
        structlog.contextvars.bind_contextvars(
            consumer=self._spec.durable,
            ce_id=headers.get("ce-id"),
            # The request that created the event, so one id follows it from the gateway to here.
            request_id=headers.get(REQUEST_ID),
            stream_seq=metadata.sequence.stream,
            deliveries=metadata.num_delivered,
        )
        try:
            if faults.should_fail_attempt(self._spec.durable, metadata.num_delivered):
                raise faults.InjectedFailure(f"consumer_fail_first: delivery {metadata.num_delivered} fails on purpose")
            async with asyncio.timeout(self._spec.handler_timeout_seconds):
                outcome = await self._handler(raw)
        except Exception as error:
            await self._handle_failure(message, error)
            return
        await message.ack()
        self._first_failures.forget(raw)
        log.info("event consumed", outcome=outcome)

    async def _handle_failure(self, message: NatsMessage, error: Exception) -> None:
        """The classification lives in `failures`; this applies it to the broker."""
        raw: Msg = message.raw_message
        first_failure_at = self._first_failures.failed(raw)
        failure = classify(error)
        if failure is Failure.PERMANENT:
            failed = Failed(Reason.PERMANENT, describe(error), error_class(error), first_failure_at)
            await self._dead_letter(message, failed)
        elif raw.metadata.num_delivered < self._spec.max_deliver:
            await self._retry_later(message, error, failure)
        else:
            last_error = f"max_deliver ({self._spec.max_deliver}) exhausted; last error: {describe(error)}"
            await self._dead_letter(message, Failed(Reason.EXHAUSTED, last_error, error_class(error), first_failure_at))

    async def _retry_later(self, message: NatsMessage, error: Exception, failure: Failure) -> None:
        spec = self._spec
        delay = retry_delay(message.raw_message.metadata.num_delivered, spec.retry_base_seconds, spec.retry_max_seconds)
        await message.nack(delay=delay)
        log.warning(
            "event consumed",
            outcome="retry",
            error=describe(error),
            error_class=error_class(error),
            retry_in_seconds=round(delay, 3),
            # An outage is expected and needs no traceback; anything else is a bug to see.
            exc_info=failure is Failure.UNFORESEEN,
        )

    async def _dead_letter(self, message: NatsMessage, failed: Failed) -> None:
        """Store it in DEAD_LETTERS, then ack: it no longer holds up the messages behind it. If the
        store fails, the exception leaves the message unacked and the broker redelivers it."""
        raw: Msg = message.raw_message
        await publish_dead_letter(self._js, raw, consumer=self._spec.durable, failed=failed)
        await message.ack()
        self._first_failures.forget(raw)
        log.warning(
            "event consumed",
            outcome="dead-lettered",
            reason=failed.reason.value,
            error=failed.error,
            error_class=failed.error_class,
        )


async def consume(
    spec: ConsumerSpec,
    handler: Handler,
    *,
    nats_url: str,
    client_name: str,
    grace_seconds: float,
    subscribed: asyncio.Event | None = None,
) -> None:
    """Run the consumer until cancelled; then stop fetching, let the in-flight messages finish
    (up to `grace_seconds`) and close the connection. NATS may be down when this starts: it keeps
    trying, and reconnects by itself whenever the connection drops later. `subscribed` is set
    once the durable consumer exists and messages are being fetched (readiness.consumer_started)."""
    await consume_and_publish(
        spec,
        lambda _: handler,
        nats_url=nats_url,
        client_name=client_name,
        grace_seconds=grace_seconds,
        subscribed=subscribed,
    )


async def consume_and_publish(
    spec: ConsumerSpec,
    handler_for: HandlerFactory,
    *,
    nats_url: str,
    client_name: str,
    grace_seconds: float,
    subscribed: asyncio.Event | None = None,
) -> None:
    """`consume`, for a handler that publishes: `handler_for` makes it from the consumer's own
    JetStream context once connected, so it publishes on the connection it consumes from, which
    stays open until the messages in flight are done."""
    broker = NatsBroker(
        nats_url,
        name=client_name,
        max_reconnect_attempts=-1,  # reconnect forever: nats-py gives up after ~2 minutes by default
        reconnect_time_wait=1,
        connect_timeout=2,
        graceful_timeout=grace_seconds,
        # Through the standard logging set-up: FastStream's per-message INFO lines stay quiet,
        # its errors (a failed ack, say) still show.
        logger=logging.getLogger(f"{client_name}.broker"),
    )
    try:
        js = await _set_up(broker, spec)
        broker.subscriber(
            spec.subject,
            stream=JStream(spec.stream, declare=False),
            durable=spec.durable,
            config=consumer_config(spec),
            pull_sub=PullSub(batch_size=spec.batch_size, timeout=FETCH_TIMEOUT_SECONDS),
            ack_policy=AckPolicy.MANUAL,
            decoder=_undecoded,
        )(MessageHandling(spec, handler_for(js), js).handle)
        await broker.start()
        _raise_if_cancelled()
        log.info("consuming", stream=spec.stream, subject=spec.subject, consumer=spec.durable)
        if subscribed is not None:
            subscribed.set()
        await asyncio.Event().wait()
    finally:
        await broker.stop()


async def _set_up(broker: NatsBroker, spec: ConsumerSpec) -> JetStreamContext:
    """Connect, and create the streams and the durable consumer; retried until NATS answers."""
    reported = False
    while True:
        _raise_if_cancelled()
        try:
            connection = await broker.connect()
            js = connection.jetstream(timeout=spec.handler_timeout_seconds)
            await ensure_streams(js, spec.duplicate_window_seconds)
            await ensure_consumer(js, spec)
        except NATS_UNREACHABLE as error:
            if not reported:
                log.warning("cannot reach NATS yet; retrying", consumer=spec.durable, error=describe(error))
                reported = True
            await broker.stop()
            await asyncio.sleep(CONNECT_RETRY_SECONDS)
        else:
            if reported:
                log.info("NATS reached", consumer=spec.durable)
            return js


def _raise_if_cancelled() -> None:
    """nats-py swallows a CancelledError in places (its flush after a request, for one), so a stop
    during start-up can go unnoticed and the consumer would then wait forever. The task still
    counts the cancellation request: honour it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _undecoded(message: StreamMessage[Any]) -> bytes:
    """FastStream decoder that hands the body over untouched: reading it is the handler's job."""
    return message.body


def _stored_at(message: Msg) -> datetime:
    """When the broker stored the message (the ack subject carries it)."""
    return message.metadata.timestamp.astimezone(UTC)
