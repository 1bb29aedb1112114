"""The outbox relay against real PostgreSQL and JetStream: what it publishes, when it wakes, and
that relays running side by side publish each event once."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_contracts.cloudevents import CloudEvent
from orderflow_contracts.streams import ORDER_CREATED_SUBJECT
from orderflow_devstack.infra import Infrastructure
from orderflow_kit.request_context import new_traceparent, traceparent_var
from orders.outbox_relay import LISTENER_APPLICATION_NAME, OutboxRelay
from tests.integration.orders.helpers import (
    copies_seen,
    next_stream_seq,
    pending_events,
    published_on_the_wire,
    stage,
    stream_messages,
)
from tests.support.databases import scalar
from tests.support.jetstream import jetstream
from tests.support.polling import eventually

# Longer than any test here: a relay configured with it can only be woken by NOTIFY.
NEVER_POLLS = 60.0


@contextlib.asynccontextmanager
async def running(*relays: OutboxRelay) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(relay.run()) for relay in relays]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task  # a relay that crashed raises its error here


async def listener_pids(engine: AsyncEngine, database: str) -> set[int]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = :db AND application_name = :name"),
            {"db": database, "name": LISTENER_APPLICATION_NAME},
        )
        return {row.pid for row in rows}


async def all_published(engine: AsyncEngine, events: list[CloudEvent]) -> bool:
    return await pending_events(engine, [event.id for event in events]) == 0


async def test_each_event_is_published_with_its_cloudevents_headers_and_marked_after_the_ack(
    infra: Infrastructure, orders_engine: AsyncEngine
) -> None:
    traceparent = new_traceparent()
    token = traceparent_var.set(traceparent)
    try:
        events = await stage(orders_engine, 3)
    finally:
        traceparent_var.reset(token)

    async with jetstream(infra.nats_url) as js:
        first_seq = await next_stream_seq(js)
        async with running(OutboxRelay(orders_engine, infra.nats_url)):
            await eventually(lambda: all_published(orders_engine, events))
        messages = await stream_messages(js, first_seq, {event.id for event in events})

    assert [message.headers["ce-id"] for message in messages if message.headers] == [event.id for event in events]
    for event, message in zip(events, messages, strict=True):
        assert message.subject == ORDER_CREATED_SUBJECT
        assert message.headers is not None
        assert message.headers["Nats-Msg-Id"] == event.id
        assert message.data == event.data
        assert CloudEvent.from_message(message.headers, message.data or b"") == event
        assert message.headers["traceparent"] == traceparent
    async with orders_engine.connect() as connection:
        rows = await connection.execute(text("SELECT id::text, published_at FROM outbox"))
        published_at = {event_id: marked for event_id, marked in rows}
    for event, message in zip(events, messages, strict=True):
        assert message.time is not None
        assert published_at[event.id] >= message.time, "marked published before the broker stored it"


async def test_notify_wakes_the_relay_at_once(
    infra: Infrastructure, orders_engine: AsyncEngine, orders_database: str
) -> None:
    async with running(OutboxRelay(orders_engine, infra.nats_url, poll_seconds=NEVER_POLLS)):
        await eventually(lambda: _listening(orders_engine, orders_database))

        events = await stage(orders_engine, 1)

        await eventually(lambda: all_published(orders_engine, events), within=2.0)


async def test_events_committed_while_the_relay_lingers_go_out_in_one_batch(
    infra: Infrastructure, orders_engine: AsyncEngine, orders_database: str
) -> None:
    relay = OutboxRelay(orders_engine, infra.nats_url, poll_seconds=NEVER_POLLS, linger_seconds=1.0)
    async with running(relay):
        await eventually(lambda: _listening(orders_engine, orders_database))

        events = []
        for _ in range(3):  # three commits, 0.1 s apart: all within the linger after the first
            events += await stage(orders_engine, 1)
            await asyncio.sleep(0.1)
        third_committed = await scalar(orders_engine, "SELECT clock_timestamp()")

        await eventually(lambda: all_published(orders_engine, events), within=5.0)
    first_marked = await scalar(
        orders_engine, "SELECT min(published_at) FROM outbox WHERE id::text = ANY(:ids)", ids=[e.id for e in events]
    )
    assert first_marked >= third_committed, "the first event went out before the third was committed"


async def test_polling_publishes_an_event_whose_notification_was_missed(
    infra: Infrastructure, orders_engine: AsyncEngine, orders_database: str
) -> None:
    async with running(OutboxRelay(orders_engine, infra.nats_url, poll_seconds=0.2)):
        await eventually(lambda: _listening(orders_engine, orders_database))

        events = await stage(orders_engine, 1, notify=False)

        await eventually(lambda: all_published(orders_engine, events), within=3.0)


async def test_a_lost_listen_connection_is_opened_again(
    infra: Infrastructure, orders_engine: AsyncEngine, orders_database: str
) -> None:
    async with running(OutboxRelay(orders_engine, infra.nats_url, poll_seconds=NEVER_POLLS, retry_max_seconds=0.5)):
        await eventually(lambda: _listening(orders_engine, orders_database))
        [lost] = await listener_pids(orders_engine, orders_database)
        async with orders_engine.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": lost})
        await eventually(lambda: _has_new_listener(orders_engine, orders_database, lost))

        events = await stage(orders_engine, 1)

        await eventually(lambda: all_published(orders_engine, events), within=2.0)


async def test_two_relays_over_one_outbox_publish_each_event_once(
    infra: Infrastructure, orders_engine: AsyncEngine
) -> None:
    """Counted on the wire, where the broker's dedupe cannot hide a second publish."""
    events = await stage(orders_engine, 200)
    ids = {event.id for event in events}

    async with published_on_the_wire(infra.nats_url) as on_the_wire:
        async with jetstream(infra.nats_url) as js:
            first_seq = await next_stream_seq(js)
            relays = [OutboxRelay(orders_engine, infra.nats_url, batch_size=10) for _ in range(2)]
            async with running(*relays):
                await eventually(lambda: all_published(orders_engine, events))
            stored = await stream_messages(js, first_seq, ids)
        await eventually(lambda: len(copies_seen(on_the_wire, ids)) >= len(ids))

    assert sorted(headers["ce-id"] for headers in copies_seen(on_the_wire, ids)) == sorted(ids)
    assert sorted(message.headers["ce-id"] for message in stored if message.headers) == sorted(ids)


async def test_an_event_the_broker_refuses_stays_pending_while_the_rest_of_its_batch_is_published(
    infra: Infrastructure, orders_engine: AsyncEngine
) -> None:
    """The refused event is the oldest of the batch; it is published once its cause is fixed."""
    refused, *others = await stage(orders_engine, 4)
    await set_subject(orders_engine, refused, "nowhere.created")  # no stream stores this subject

    relay = OutboxRelay(orders_engine, infra.nats_url, publish_timeout=0.5, retry_max_seconds=0.2)
    async with running(relay):
        await eventually(lambda: all_published(orders_engine, others))
        assert await pending_events(orders_engine, [refused.id]) == 1

        await set_subject(orders_engine, refused, ORDER_CREATED_SUBJECT)

        await eventually(lambda: all_published(orders_engine, [refused]))


async def set_subject(engine: AsyncEngine, event: CloudEvent, subject: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE outbox SET subject = :subject WHERE id = :id"), {"subject": subject, "id": event.id}
        )


@pytest.mark.parametrize("batch_size", [1, 7])
async def test_batches_of_any_size_publish_everything_in_order(
    infra: Infrastructure, orders_engine: AsyncEngine, batch_size: int
) -> None:
    events = await stage(orders_engine, 15)

    async with jetstream(infra.nats_url) as js:
        first_seq = await next_stream_seq(js)
        async with running(OutboxRelay(orders_engine, infra.nats_url, batch_size=batch_size)):
            await eventually(lambda: all_published(orders_engine, events))
        messages = await stream_messages(js, first_seq, {event.id for event in events})

    assert [message.headers["ce-id"] for message in messages if message.headers] == [event.id for event in events]


async def _listening(engine: AsyncEngine, database: str) -> bool:
    return bool(await listener_pids(engine, database))


async def _has_new_listener(engine: AsyncEngine, database: str, lost: int) -> bool:
    pids = await listener_pids(engine, database)
    return bool(pids) and lost not in pids
