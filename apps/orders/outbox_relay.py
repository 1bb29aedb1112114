"""The publish side of the transactional outbox: moves committed events from the `outbox` table
to JetStream, at least once, in the order they were created.

- It takes a batch of the oldest pending rows (locking them), puts ALL their publishes in flight
  at once, then awaits the broker's PubAcks, at most `publish_timeout` seconds; one UPDATE marks
  the acked rows published, in the same transaction. The rows are locked for that long and no
  longer, however long NATS stays away.
- An event is marked published only after the broker's PubAck (a duplicate ack counts: the
  broker already has it). A crash between the ack and the mark publishes it again, with the same
  `Nats-Msg-Id`, which the broker drops within its duplicate window.
- An event whose publish failed (no ack in time, an error) stays pending and is published again
  with the next batch: it may then reach the stream after events created later.
- While NATS (or PostgreSQL) is away, rows stay pending and the relay retries with exponential
  backoff and jitter; the orders service keeps taking orders meanwhile.
- `FOR UPDATE SKIP LOCKED` lets several relays (replicas) share the table: each pending row is
  taken by one transaction at a time.
- It wakes on `NOTIFY outbox` from the transaction that wrote the event, and polls as well,
  because notifications sent while its LISTEN connection is down are lost for good.
- Traced (orderflow_kit.tracing): a span per batch, linking every event it carries, and one per
  event, in the event's own trace (docs/observability.md, "Traces").

Measured: events published (acked by the broker) and publishes that failed, by error class; how
long each event waited in the outbox (created to acked). The backlog itself (rows pending, the
oldest one's age) is read from the table on scrape (orders.outbox.outbox_gauges)."""

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import KW_ONLY, dataclass
from datetime import datetime
from functools import partial

import asyncpg
import nats.errors
import stamina
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind
from prometheus_client import Counter, Histogram
from sqlalchemy import ARRAY, Row, any_, bindparam, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_contracts.streams import ORDERS_STREAM
from orderflow_kit import faults, tracing
from orderflow_kit.faults import Fault
from orderflow_kit.metrics import LAG_BUCKETS, child
from orderflow_kit.nats import DUPLICATE_WINDOW_SECONDS, connect, ensure_streams, raise_if_cancelled
from orders.models import OUTBOX
from orders.outbox import NOTIFY_CHANNEL

# How the relay's LISTEN connection shows up in pg_stat_activity.
LISTENER_APPLICATION_NAME = "orders-outbox-listener"

log = structlog.get_logger()

PUBLISHED = Counter("orderflow_outbox_published_total", "Outbox events the broker acknowledged (duplicates included)")
# One per failed attempt at a batch (the relay then backs off and tries again), including "NATS is not connected".
PUBLISH_FAILURES = Counter(
    "orderflow_outbox_publish_failures_total", "Relay attempts that left events unpublished, by error class", ["error"]
)
PUBLISH_LAG = Histogram(
    "orderflow_outbox_publish_lag_seconds",
    "From an event's commit to the outbox to the broker's PubAck",
    buckets=LAG_BUCKETS,
)

# The oldest pending events, locked; rows another relay holds are skipped, not waited for.
_TAKE_PENDING = (
    select(
        OUTBOX.c.id,
        OUTBOX.c.aggregate_id,
        OUTBOX.c.event_type,
        OUTBOX.c.subject,
        OUTBOX.c.payload,
        OUTBOX.c.headers,
        OUTBOX.c.created_at,
    )
    .where(OUTBOX.c.published_at.is_(None))
    .order_by(OUTBOX.c.created_at)
    .limit(bindparam("batch_size"))
    .with_for_update(skip_locked=True)
)
# A row of _TAKE_PENDING: id, aggregate_id, event_type, subject, payload, headers, created_at.
_PendingEvent = Row[uuid.UUID, uuid.UUID, str, str, bytes, dict[str, str], datetime]
_MARK_PUBLISHED = (
    update(OUTBOX)
    .where(OUTBOX.c.id == any_(bindparam("event_ids", type_=ARRAY(OUTBOX.c.id.type))))
    .values(published_at=func.clock_timestamp())  # the time of the acks, not of BEGIN
)


class BrokerAway(Exception):
    """NATS is disconnected (the client is reconnecting): nothing can be published now."""


# Failures that pass when the broker or the database comes back: retried, never fatal.
_TRANSIENT = (BrokerAway, nats.errors.Error, DBAPIError, asyncpg.PostgresError, OSError, TimeoutError)


@dataclass(frozen=True)
class OutboxRelay:
    engine: AsyncEngine
    nats_url: str
    _: KW_ONLY
    batch_size: int = 100
    poll_seconds: float = 1.0
    linger_seconds: float = 0.0
    publish_timeout: float = 2.0
    retry_max_seconds: float = 5.0
    duplicate_window_seconds: float = DUPLICATE_WINDOW_SECONDS

    async def run(self) -> None:
        """Publish pending events until cancelled. Waits for NATS as long as it takes."""
        broker = await connect(self.nats_url, name="orders-outbox-relay")  # retries until NATS answers
        try:
            raise_if_cancelled()
            js = broker.jetstream()
            await self._retrying(lambda: ensure_streams(js, self.duplicate_window_seconds))
            log.info("outbox relay running")
            woken = asyncio.Event()
            listening = asyncio.create_task(self._listen_for_commits(woken))
            try:
                while True:
                    woken.clear()
                    await self._retrying(lambda: self._publish_pending(broker, js))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), self.poll_seconds)
                    if woken.is_set() and self.linger_seconds:
                        await asyncio.sleep(self.linger_seconds)  # the commits of the next moments join the batch
                    raise_if_cancelled()
            finally:
                listening.cancel()
                await asyncio.gather(listening, return_exceptions=True)
        finally:
            await broker.close()

    async def _publish_pending(self, broker: Client, js: JetStreamContext) -> None:
        """Batch after batch until one comes back short: nothing is pending any more."""
        while await self._publish_batch(broker, js) == self.batch_size:
            pass

    async def _publish_batch(self, broker: Client, js: JetStreamContext) -> int:
        """Publish the oldest pending events; returns how many were pending.

        When a publish fails, the events the broker acked are still marked (fewer duplicates
        later), the others stay pending, and the failure is raised for the caller to back off."""
        if not broker.is_connected:
            child(PUBLISH_FAILURES, BrokerAway.__name__).inc()
            raise BrokerAway("NATS is not connected")
        async with self.engine.begin() as connection:
            pending = (await connection.execute(_TAKE_PENDING, {"batch_size": self.batch_size})).all()
            with _relaying(pending) as batch:
                sends = [_sending(event, batch) for event in pending]
                try:
                    outcomes = await self._publish_all(js, pending)
                    acked = [
                        (event, ack) for event, ack in zip(pending, outcomes, strict=True) if isinstance(ack, PubAck)
                    ]
                    for event, _ in acked:
                        # Fault flags (docs/fault-flags.md): a crash in the window this design covers
                        # (acked, not marked), and a duplicate publish for consumers to catch.
                        faults.crash_point(Fault.RELAY_CRASH_AFTER_PUBLISH, event_id=str(event.id))
                        await faults.publish_twice(
                            partial(self._publish, js, event), event.headers, event_id=str(event.id)
                        )
                    if acked:
                        await connection.execute(_MARK_PUBLISHED, {"event_ids": [event.id for event, _ in acked]})
                except BaseException as error:
                    for send in sends:
                        tracing.mark_failed(send, error)
                        send.end()
                    raise
        PUBLISHED.inc(len(acked))
        now = time.time()
        for event, ack, send in zip(pending, outcomes, sends, strict=True):
            with trace.use_span(send, end_on_exit=True):  # the line belongs to the event's trace
                if isinstance(ack, PubAck):
                    PUBLISH_LAG.observe(max(0.0, now - event.created_at.timestamp()))
                    log.info(
                        "event published",
                        order_id=str(event.aggregate_id),
                        event_id=str(event.id),
                        event_type=event.event_type,
                        stream_seq=ack.seq,
                        duplicate=bool(ack.duplicate),
                    )
                else:
                    tracing.mark_failed(send, ack)
        failure = next((outcome for outcome in outcomes if isinstance(outcome, BaseException)), None)
        if failure is not None:
            child(PUBLISH_FAILURES, type(failure).__name__).inc()
            raise failure
        return len(pending)

    async def _publish_all(self, js: JetStreamContext, events: Sequence[_PendingEvent]) -> list[PubAck | BaseException]:
        """Each event's PubAck, or why it has none: all publishes are sent at once, then their acks
        awaited together, at most `publish_timeout` seconds."""
        sent: list[asyncio.Future[PubAck]] = []
        for event in events:
            try:
                sent.append(await self._send(js, event, event.headers))
            except Exception as error:  # the connection closed, its buffer is full...: send no more
                return [*await self._acks(sent), *[error] * (len(events) - len(sent))]
        return await self._acks(sent)

    async def _acks(self, sent: Sequence[asyncio.Future[PubAck]]) -> list[PubAck | BaseException]:
        if not sent:
            return []
        try:
            await asyncio.wait(sent, timeout=self.publish_timeout)
        finally:
            for future in sent:
                future.cancel()  # if still waiting: the JetStream context forgets it, and drops a late ack
        timed_out = TimeoutError(f"no PubAck within {self.publish_timeout:g} s")
        return [timed_out if future.cancelled() else future.exception() or future.result() for future in sent]

    async def _send(
        self, js: JetStreamContext, event: _PendingEvent, headers: Mapping[str, str]
    ) -> asyncio.Future[PubAck]:
        """Publish without waiting: the future resolves to the broker's PubAck."""
        return await js.publish_async(
            event.subject,
            event.payload,
            headers=dict(headers),  # a copy: js.publish_async adds a header to it
            stream=ORDERS_STREAM,  # refused unless the ORDERS stream stores it
        )

    async def _publish(self, js: JetStreamContext, event: _PendingEvent, headers: Mapping[str, str]) -> PubAck:
        """One publish, its ack awaited: publish_twice's second copy."""
        return await asyncio.wait_for(await self._send(js, event, headers), self.publish_timeout)

    async def _listen_for_commits(self, woken: asyncio.Event) -> None:
        """Keep a LISTEN connection open for as long as the relay runs, re-opening it when lost."""
        while True:
            await self._retrying(lambda: self._listen_until_lost(woken))

    async def _listen_until_lost(self, woken: asyncio.Event) -> None:
        dsn = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await asyncpg.connect(dsn, server_settings={"application_name": LISTENER_APPLICATION_NAME})
        try:
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _connection: lost.set())
            await connection.add_listener(NOTIFY_CHANNEL, lambda *_notification: woken.set())
            woken.set()  # catch up with what was committed while nobody listened
            await lost.wait()
            log.warning("outbox LISTEN connection lost; listening again")
        finally:
            await connection.close()

    async def _retrying(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work` until it succeeds, backing off (exponentially, with jitter) on transient failures."""
        async for attempt in stamina.retry_context(
            on=_TRANSIENT, attempts=None, timeout=None, wait_max=self.retry_max_seconds
        ):
            with attempt:
                raise_if_cancelled()
                await work()


def _relaying(events: Sequence[_PendingEvent]) -> AbstractContextManager[Span]:
    """The batch's span: a root of its own (the batch serves many orders, it belongs to none of
    their traces) that links every event it carries; the statement that marks them is in it."""
    if not events or not tracing.enabled():
        return nullcontext(trace.INVALID_SPAN)
    subjects = sorted({event.subject for event in events})
    destination = subjects[0] if len(subjects) == 1 else ORDERS_STREAM
    return tracing.span(
        f"send {destination}",
        kind=SpanKind.CLIENT,
        context=Context(),
        links=tracing.links_to(event.headers for event in events),
        attributes=tracing.messaging_attributes("send", destination, batch_size=len(events), operation_name="relay"),
    )


def _sending(event: _PendingEvent, batch: Span) -> Span:
    """One event's publish, from the send to the broker's PubAck and the mark: a child of the
    event's creation context (so the relay shows in the order's trace), linked to its batch."""
    if not tracing.enabled():
        return trace.INVALID_SPAN
    return tracing.start_span(
        f"send {event.subject}",
        kind=SpanKind.PRODUCER,
        context=tracing.context_of(event.headers),
        links=tracing.link_to(batch),
        attributes=tracing.messaging_attributes(
            "send", event.subject, message_id=str(event.id), operation_name="relay"
        ),
    )
