"""The durable JetStream pull consumer every orderflow service uses: a service supplies a handler
(what a batch of messages means to it), this module does the rest, the same way for everyone. A
handler that publishes gets the consumer's own JetStream context (`consume_and_publish`).

Messages come in batches: one pull (FastStream's `PullSub(batch_size=...)`) takes whatever the
stream holds, up to `batch_size`, waiting at most `batch_window_seconds` (20 ms) for it, so a lone
message is never held back long; `PullBatches` hands the messages of one pull to the handler
together. The handler does the whole batch in one transaction and returns one result per message:
its outcome, or the exception that message failed with. Then, per message: ack a success (after
the commit, as the handler returned), and for a failure `failures.classify` decides:

- PERMANENT: dead-letter at once (orderflow_kit.dead_letters), then ack;
- anything else: NAK with a growing delay (`failures.retry_delay`) until the last delivery
  (max_deliver), which is dead-lettered as exhausted, then acked.

When the handler raises instead, the whole batch failed. A dependency outage (the database is
away) is every message's failure: each is retried as it would have been alone. Anything else may
be one message's fault (a poison message aborting the transaction, or hanging it): each message is
then handled again alone, so a poison message is dead-lettered alone and its neighbours go through.

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
(AckPolicy.MANUAL) and lets no error escape; it must not decode the bodies either (a body that is
not JSON would fail before the handler could dead-letter it); and an existing durable consumer is
reused with its old settings unless it is updated (`ensure_consumer`).

Traced (orderflow_kit.tracing), when on: FastStream's telemetry gives each message a process
span, a child of the context its traceparent carries; the batch gets a span of its own that
links every message; each message's settlement (ack, NAK, dead letter) and log line happen in
its own process span (docs/observability.md, "Traces")."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import nats.errors
import nats.js.errors
import structlog
from faststream import AckPolicy, StreamMessage
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from faststream.nats.opentelemetry import NatsTelemetryMiddleware
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import Span, SpanKind
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from orderflow_contracts.cloudevents import REQUEST_ID
from orderflow_kit import faults, tracing
from orderflow_kit.dead_letters import Failed, Reason, count_dead_letters, dead_letter_filter, publish_dead_letter
from orderflow_kit.failures import PERMANENT_ERRORS, Failure, classify, describe, error_class, retry_delay
from orderflow_kit.metrics import DURATION_BUCKETS, LAG_BUCKETS, Source, child, measured_on_scrape, observe_seconds
from orderflow_kit.nats import DUPLICATE_WINDOW_SECONDS, ensure_streams

log = structlog.get_logger()

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

EVENTS = Counter(
    "orderflow_consumer_events_total",
    "Messages a durable consumer settled, by outcome: processed, duplicate, retried, dead_lettered",
    ["consumer", "outcome"],
)
HANDLER_DURATION = Histogram(
    "orderflow_consumer_handler_duration_seconds",
    "Time the handler took for one batch (one transaction), by consumer",
    ["consumer"],
    buckets=DURATION_BUCKETS,
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

# One message's result: its outcome for the log line ("awarded", "duplicate", ...), or the
# exception it failed with.
Result = str | Exception
# Handles a batch of messages (in stream order) and returns one result per message, in the same
# order. Raising fails the whole batch: see the module docstring for what happens then.
Handler = Callable[[Sequence[Msg]], Awaitable[Sequence[Result]]]
T = TypeVar("T")

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
    # The most messages one batch (one transaction) holds, and the longest one pull waits for
    # messages: a lone message waits at most this, and an idle consumer pulls this often.
    batch_size: int = 100
    batch_window_seconds: float = 0.02
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


def read_each(messages: Sequence[Msg], read: Callable[[dict[str, str] | None, bytes], T]) -> list[T | Exception]:
    """Each message as `read` reads it, or the permanent error that makes it unreadable: that
    message's result, which fails it alone, not the batch."""
    readings: list[T | Exception] = []
    for message in messages:
        try:
            readings.append(read(message.headers, message.data))
        except PERMANENT_ERRORS as error:
            readings.append(error)
    return readings


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


class BatchHandling:
    """Runs the handler on a batch, then applies each message's result to the broker."""

    def __init__(self, spec: ConsumerSpec, handler: Handler, js: JetStreamContext) -> None:
        self._spec = spec
        self._handler = handler
        self._js = js
        self._first_failures = FirstFailures()

    async def handle(self, batch: list[Msg], contexts: Sequence[Context] | None = None) -> None:
        """Ack, NAK or dead-letter-then-ack every message of the batch; log one line for each.

        `contexts` (with tracing on): each message's processing context, its process span; what
        is done for one message alone (its announcement, dead letter, log line) happens in it."""
        with self._batch_span(batch) as batch_span, tracing.processing_messages(batch, contexts or ()):
            for message_context in contexts or ():
                trace.get_current_span(message_context).add_link(batch_span.get_span_context())
            results = await self._results(batch)
            settled = await asyncio.gather(
                *(self._settle_in_its_context(one, result) for one, result in zip(batch, results, strict=True)),
                return_exceptions=True,
            )
            for one, outcome in zip(batch, settled, strict=True):
                if isinstance(outcome, BaseException):
                    # Left unacked: the broker redelivers it after ack_wait.
                    with tracing.in_context_of(one):
                        log.error("event not settled", **_described(self._spec, one), error=str(outcome))

    def _batch_span(self, batch: list[Msg]) -> AbstractContextManager[Span]:
        """The batch's span: a root of its own (the batch's transaction serves many orders and
        belongs to none of their traces) that links every message it carries; each message's
        process span links back to it."""
        if not tracing.enabled():
            return nullcontext(trace.INVALID_SPAN)
        return tracing.span(
            f"process {self._spec.subject}",
            kind=SpanKind.CONSUMER,
            context=Context(),
            links=tracing.links_to(one.headers for one in batch),
            attributes=tracing.messaging_attributes(
                "process",
                self._spec.subject,
                batch_size=len(batch),
                consumer=self._spec.durable,
            ),
        )

    async def _settle_in_its_context(self, message: Msg, result: Result) -> None:
        with tracing.in_context_of(message):
            await self._settle(message, result)

    async def _results(self, batch: list[Msg]) -> list[Result]:
        """Each message's result; a delivery the `consumer_fail_first` fault flag fails never reaches the handler."""
        results: list[Result | None] = [self._injected_failure(one) for one in batch]
        to_handle = [index for index, result in enumerate(results) if result is None]
        if to_handle:
            handled = await self._run([batch[index] for index in to_handle])
            for index, result in zip(to_handle, handled, strict=True):
                results[index] = result
        return [result for result in results if result is not None]

    async def _run(self, messages: list[Msg]) -> list[Result]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._spec.handler_timeout_seconds):
                results = list(await self._handler(messages))
        except Exception as error:
            if len(messages) == 1:
                return [error]
            if classify(error) is Failure.DEPENDENCY and not isinstance(error, TimeoutError):
                return [error] * len(messages)
            return await self._run_alone(messages)
        observe_seconds(HANDLER_DURATION, time.perf_counter() - started, self._spec.durable)
        if len(results) != len(messages):
            raise RuntimeError(f"the handler answered {len(results)} results for {len(messages)} messages")
        return results

    async def _run_alone(self, messages: list[Msg]) -> list[Result]:
        """Find the message that failed its batch: handle each alone, telling the broker the others
        are still in progress, so that handling them one by one never outlasts their ack_wait."""
        results: list[Result] = []
        for index, one in enumerate(messages):
            await asyncio.gather(*(waiting.in_progress() for waiting in messages[index:]))
            results.extend(await self._run([one]))
        return results

    def _injected_failure(self, message: Msg) -> Exception | None:
        deliveries = message.metadata.num_delivered
        if faults.should_fail_attempt(self._spec.durable, deliveries):
            return faults.InjectedFailure(f"consumer_fail_first: delivery {deliveries} fails on purpose")
        return None

    async def _settle(self, message: Msg, result: Result) -> None:
        if isinstance(result, Exception):
            await self._handle_failure(message, result)
            return
        await message.ack()
        self._first_failures.forget(message)
        durable = self._spec.durable
        child(EVENTS, durable, "duplicate" if result == DUPLICATE else "processed").inc()
        observe_seconds(EVENT_LAG, max(0.0, time.time() - message.metadata.timestamp.timestamp()), durable)
        log.info("event consumed", **_described(self._spec, message), outcome=result)

    async def _handle_failure(self, message: Msg, error: Exception) -> None:
        """The classification lives in `failures`; this applies it to the broker."""
        first_failure_at = self._first_failures.failed(message)
        failure = classify(error)
        if failure is Failure.PERMANENT:
            failed = Failed(Reason.PERMANENT, describe(error), error_class(error), first_failure_at)
            await self._dead_letter(message, failed)
        elif message.metadata.num_delivered < self._spec.max_deliver:
            await self._retry_later(message, error, failure)
        else:
            last_error = f"max_deliver ({self._spec.max_deliver}) exhausted; last error: {describe(error)}"
            await self._dead_letter(message, Failed(Reason.EXHAUSTED, last_error, error_class(error), first_failure_at))

    async def _retry_later(self, message: Msg, error: Exception, failure: Failure) -> None:
        spec = self._spec
        delay = retry_delay(message.metadata.num_delivered, spec.retry_base_seconds, spec.retry_max_seconds)
        await message.nak(delay=delay)
        child(EVENTS, spec.durable, "retried").inc()
        log.warning(
            "event consumed",
            **_described(spec, message),
            outcome="retry",
            error=describe(error),
            error_class=error_class(error),
            retry_in_seconds=round(delay, 3),
            # An outage is expected and needs no traceback; anything else is a bug to see.
            exc_info=error if failure is Failure.UNFORESEEN else False,
        )

    async def _dead_letter(self, message: Msg, failed: Failed) -> None:
        """Store it in DEAD_LETTERS, then ack: it no longer holds up the messages behind it. If the
        store fails, the exception leaves the message unacked and the broker redelivers it."""
        trace.get_current_span().set_attribute("orderflow.dead_lettered", failed.reason.value)
        await publish_dead_letter(self._js, message, consumer=self._spec.durable, failed=failed)
        await message.ack()
        self._first_failures.forget(message)
        child(EVENTS, self._spec.durable, "dead_lettered").inc()
        log.warning(
            "event consumed",
            **_described(self._spec, message),
            outcome="dead-lettered",
            reason=failed.reason.value,
            error=failed.error,
            error_class=failed.error_class,
        )


class PullBatches:
    """FastStream hands the messages of one pull over one by one, each in a task of its own, all
    started together. The first to arrive lets the event loop turn until a turn brings no sibling
    (they all run the same steps to get here), then runs them as one batch; the others wait for
    that batch to be settled.

    (FastStream's own `PullSub(batch=True)` keeps pulling until the batch is full or its timeout
    has passed: a lone message would wait for the whole timeout, and with a short one, nats-py
    2.16 loses deliveries to redelivery after ack_wait.)"""

    def __init__(self, run: Callable[[list[Msg], list[Context]], Awaitable[None]]) -> None:
        self._run = run
        self._joining: list[Msg] | None = None
        self._contexts: list[Context] = []
        self._settled: asyncio.Future[None] | None = None

    async def add(self, message: NatsMessage) -> None:
        # With tracing on, FastStream's telemetry has made this message's process span current.
        context = otel_context.get_current() if tracing.enabled() else None
        if self._joining is not None and self._settled is not None:
            self._joining.append(message.raw_message)
            if context is not None:
                self._contexts.append(context)
            await asyncio.shield(self._settled)
            return
        self._joining = batch = [message.raw_message]
        self._contexts = contexts = [] if context is None else [context]
        self._settled = settled = asyncio.get_running_loop().create_future()
        joined = 0
        while joined < len(batch):  # the other messages of the same pull join meanwhile
            joined = len(batch)
            await asyncio.sleep(0)
        self._joining = self._settled = None
        try:
            await self._run(batch, contexts)
        finally:
            settled.set_result(None)


def _described(spec: ConsumerSpec, message: Msg) -> dict[str, object]:
    """What every log line about a consumed message says of it."""
    headers = message.headers or {}
    metadata = message.metadata
    return {
        "consumer": spec.durable,
        "ce_id": headers.get("ce-id"),
        "ce_subject": headers.get("ce-subject"),
        # The request that created the event, so one id follows it from the gateway to here.
        "request_id": headers.get(REQUEST_ID),
        "stream_seq": metadata.sequence.stream,
        "deliveries": metadata.num_delivered,
    }


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
    provider = tracing.tracer_provider()
    broker = NatsBroker(
        nats_url,
        # Each message's process span, a child of its creation context (its traceparent header).
        middlewares=()
        if provider is None
        else (NatsTelemetryMiddleware(tracer_provider=provider, meter_provider=NoOpMeterProvider()),),
        name=client_name,
        max_reconnect_attempts=-1,  # reconnect forever: nats-py gives up after ~2 minutes by default
        reconnect_time_wait=1,
        connect_timeout=2,
        graceful_timeout=grace_seconds,
        # Through the standard logging set-up: FastStream's per-message INFO lines stay quiet,
        # its errors (a failed ack, say) still show.
        logger=logging.getLogger(f"{client_name}.broker"),
    )
    for outcome in OUTCOMES:  # every series exists from the start, at 0: rate() and alerts see the first one
        child(EVENTS, spec.durable, outcome)
    try:
        js = await _set_up(broker, spec)
        broker.subscriber(
            spec.subject,
            stream=JStream(spec.stream, declare=False),
            durable=spec.durable,
            config=consumer_config(spec),
            pull_sub=PullSub(batch_size=spec.batch_size, timeout=spec.batch_window_seconds),
            ack_policy=AckPolicy.MANUAL,
            decoder=_undecoded,
        )(PullBatches(BatchHandling(spec, handler_for(js), js).handle).add)
        await broker.start()
        _raise_if_cancelled()
        log.info("consuming", stream=spec.stream, subject=spec.subject, consumer=spec.durable)
        if subscribed is not None:
            subscribed.set()
        with measured_on_scrape({f"consumer {spec.durable}": consumer_gauges(js, spec)}):
            await asyncio.Event().wait()
    finally:
        await broker.stop()


def consumer_gauges(js: JetStreamContext, spec: ConsumerSpec) -> Source:
    """The durable consumer's backlog as the broker counts it, and its dead letters stored."""

    async def measure() -> list[Metric]:
        info, dead = await asyncio.gather(
            js.consumer_info(spec.stream, spec.durable),
            count_dead_letters(js, subject=dead_letter_filter(spec.durable)),
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
            family.add_metric([spec.durable], value or 0)
            families.append(family)
        return families

    return measure


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
