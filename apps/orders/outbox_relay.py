"""The publish side of the transactional outbox: moves committed events from the `outbox` table
to JetStream, at least once, in the order they were created.

- An event is marked published only after the broker's PubAck (a duplicate ack counts: the
  broker already has it). A crash between the ack and the mark publishes it again, with the same
  `Nats-Msg-Id`, which the broker drops within its duplicate window.
- While NATS (or PostgreSQL) is away, rows stay pending and the relay retries with exponential
  backoff and jitter; the orders service keeps taking orders meanwhile.
- `FOR UPDATE SKIP LOCKED` lets several relays (replicas) share the table: each pending row is
  taken by one transaction at a time.
- It wakes on `NOTIFY outbox` from the transaction that wrote the event, and polls as well,
  because notifications sent while its LISTEN connection is down are lost for good."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from functools import partial

import asyncpg
import nats.errors
import stamina
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck
from sqlalchemy import func
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from orderflow_contracts.streams import ORDERS_STREAM
from orderflow_kit import faults
from orderflow_kit.faults import Fault
from orderflow_kit.nats import DUPLICATE_WINDOW_SECONDS, connect, ensure_streams
from orders.models import OutboxEvent
from orders.outbox import NOTIFY_CHANNEL

# How the relay's LISTEN connection shows up in pg_stat_activity.
LISTENER_APPLICATION_NAME = "orders-outbox-listener"

log = structlog.get_logger()


class BrokerAway(Exception):
    """NATS is disconnected (the client is reconnecting): nothing can be published now."""


# Failures that pass when the broker or the database comes back: retried, never fatal.
_TRANSIENT = (BrokerAway, nats.errors.Error, DBAPIError, asyncpg.PostgresError, OSError, TimeoutError)


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        nats_url: str,
        *,
        batch_size: int = 100,
        poll_seconds: float = 1.0,
        publish_timeout: float = 2.0,
        retry_max_seconds: float = 5.0,
        duplicate_window_seconds: float = DUPLICATE_WINDOW_SECONDS,
    ) -> None:
        self._engine = engine
        self._nats_url = nats_url
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._publish_timeout = publish_timeout
        self._retry_max_seconds = retry_max_seconds
        self._duplicate_window_seconds = duplicate_window_seconds

    async def run(self) -> None:
        """Publish pending events until cancelled. Waits for NATS as long as it takes."""
        broker = await connect(self._nats_url, name="orders-outbox-relay")  # retries until NATS answers
        try:
            _raise_if_cancelled()
            js = broker.jetstream()
            await self._retrying(lambda: ensure_streams(js, self._duplicate_window_seconds))
            log.info("outbox relay running")
            woken = asyncio.Event()
            listening = asyncio.create_task(self._listen_for_commits(woken))
            try:
                while True:
                    woken.clear()
                    await self._retrying(lambda: self._publish_pending(broker, js))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), self._poll_seconds)
                    _raise_if_cancelled()
            finally:
                listening.cancel()
                await asyncio.gather(listening, return_exceptions=True)
        finally:
            await broker.close()

    async def _publish_pending(self, broker: Client, js: JetStreamContext) -> None:
        """Batch after batch until one comes back short: nothing is pending any more."""
        while await self._publish_batch(broker, js) == self._batch_size:
            pass

    async def _publish_batch(self, broker: Client, js: JetStreamContext) -> int:
        """Publish the oldest pending events, in order; returns how many were pending.

        When a publish fails, what the broker acked so far is still marked (fewer duplicates
        later), the rest stays pending, and the failure is raised for the caller to back off."""
        if not broker.is_connected:
            raise BrokerAway("NATS is not connected")
        acked: list[tuple[OutboxEvent, PubAck]] = []
        failure: Exception | None = None
        async with AsyncSession(self._engine, expire_on_commit=False) as session, session.begin():
            pending = (
                await session.exec(
                    select(OutboxEvent)
                    .where(col(OutboxEvent.published_at).is_(None))
                    .order_by(col(OutboxEvent.created_at))
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for event in pending:
                try:
                    ack = await self._publish(js, event, event.headers)
                    # Fault flags (docs/fault-flags.md): a crash in the window this design covers
                    # (acked, not marked), and a duplicate publish for consumers to catch.
                    faults.crash_point(Fault.RELAY_CRASH_AFTER_PUBLISH, event_id=str(event.id))
                    await faults.publish_twice(partial(self._publish, js, event), event.headers, event_id=str(event.id))
                except (nats.errors.Error, TimeoutError) as error:
                    failure = error
                    break
                acked.append((event, ack))
            if acked:
                await session.exec(
                    update(OutboxEvent)
                    .where(col(OutboxEvent.id).in_([event.id for event, _ in acked]))
                    .values(published_at=func.clock_timestamp())  # the time of the ack, not of BEGIN
                )
        for event, ack in acked:
            log.info(
                "event published",
                order_id=str(event.aggregate_id),
                event_id=str(event.id),
                event_type=event.event_type,
                stream_seq=ack.seq,
                duplicate=bool(ack.duplicate),
            )
        if failure is not None:
            raise failure
        return len(pending)

    async def _publish(self, js: JetStreamContext, event: OutboxEvent, headers: Mapping[str, str]) -> PubAck:
        return await js.publish(
            event.subject,
            event.payload,
            headers=dict(headers),  # a copy: js.publish adds a header to it
            stream=ORDERS_STREAM,  # refused unless the ORDERS stream stores it
            timeout=self._publish_timeout,
        )

    async def _listen_for_commits(self, woken: asyncio.Event) -> None:
        """Keep a LISTEN connection open for as long as the relay runs, re-opening it when lost."""
        while True:
            await self._retrying(lambda: self._listen_until_lost(woken))

    async def _listen_until_lost(self, woken: asyncio.Event) -> None:
        dsn = self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
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
            on=_TRANSIENT, attempts=None, timeout=None, wait_max=self._retry_max_seconds
        ):
            with attempt:
                _raise_if_cancelled()
                await work()


def _raise_if_cancelled() -> None:
    """nats-py swallows CancelledError in places (its flush path, for one), so a cancellation
    (the service stopping) can get lost; the relay checks for one between steps."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
