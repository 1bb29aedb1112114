"""Points are awarded exactly once per OrderCreated event (ce-id), whatever the broker does:
the dedupe row commits with the points, and the ack comes only after the commit."""

import asyncio

import pytest
from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty.awarding_points import Outcome, award_points, points_for
from loyalty.consumer import order_events
from loyalty.settings import LoyaltySettings
from orderflow_contracts.events import MAX_POINTS, read_order_created
from orderflow_contracts.streams import ORDERS_STREAM
from orderflow_devstack.infra import Infrastructure
from orderflow_kit.consumer_settings import ensure_consumer
from orderflow_kit.failures import PermanentFailure
from orderflow_kit.jetstream_consumer import consume
from tests.integration.loyalty.helpers import (
    TIMEOUT,
    assert_awarded_once,
    balance,
    consumer_info,
    consuming,
    dead_letters,
    handler_waits_on_a_lock,
    new_customer_id,
    publish_when_reconnected,
    rows,
)
from tests.support.events import order_created, publish
from tests.support.jetstream import acked_through, consumer_exists
from tests.support.polling import eventually


async def test_an_order_created_event_awards_its_points_once(
    settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext
) -> None:
    customer = new_customer_id()
    event = order_created(customer, total_cents=2599)

    async with consuming(settings, engine, js):
        ack = await publish(js, event)
        await eventually(lambda: acked_through(js, settings.order_events.consumer, ack.seq))

    assert points_for(2599) == 25
    await assert_awarded_once(engine, customer, event.id, points=25)
    assert await rows(engine, "processed_events", event.id) == 1


async def test_an_award_that_would_overflow_the_balance_is_refused_for_good_and_writes_nothing(
    engine: AsyncEngine,
) -> None:
    customer = new_customer_id()
    async with engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO balances (customer_id, points, orders_awarded) VALUES (:customer, :points, 1)"),
            {"customer": customer, "points": MAX_POINTS - 5},
        )
    event = order_created(customer, total_cents=1000)

    with pytest.raises(PermanentFailure, match="would exceed"):
        await award_points(engine, [read_order_created(event.to_headers(), event.data)])

    awarded = await balance(engine, customer)
    assert (awarded.points, awarded.orders_awarded) == (MAX_POINTS - 5, 1)
    assert await rows(engine, "ledger", event.id) == 0
    assert await rows(engine, "processed_events", event.id) == 0


async def test_the_same_event_published_twice_with_different_msg_ids_awards_once(
    settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext
) -> None:
    """The broker dedupes on Nats-Msg-Id only; a re-publish under a new one reaches the consumer."""
    customer = new_customer_id()
    event = order_created(customer, total_cents=1000)

    async with consuming(settings, engine, js):
        first = await publish(js, event)
        second = await publish(js, event, msg_id=f"{event.id}-republished")
        same_msg_id = await publish(js, event)
        await eventually(lambda: acked_through(js, settings.order_events.consumer, second.seq))

    assert not second.duplicate  # stored as a second message: the consumer sees it
    assert second.seq > first.seq
    assert same_msg_id.duplicate  # the broker's own dedupe dropped this one
    await assert_awarded_once(engine, customer, event.id, points=10)
    assert await dead_letters(js, settings.order_events.consumer) == []  # a duplicate, not a failure


async def test_a_redelivery_after_a_crash_between_commit_and_ack_awards_once(
    settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext
) -> None:
    """A handler that commits and dies before its ack: the broker redelivers after ack_wait, and
    the second delivery finds the dedupe row."""
    customer = new_customer_id()
    event = order_created(customer, total_cents=5000)
    await ensure_consumer(js, settings.order_events)
    ack = await publish(js, event)

    crashed = await js.pull_subscribe_bind(consumer=settings.order_events.consumer, stream=ORDERS_STREAM)
    [message] = await crashed.fetch(1, timeout=TIMEOUT)
    [award] = await award_points(engine, [read_order_created(message.headers, message.data)])
    assert award.outcome is Outcome.AWARDED
    await crashed.unsubscribe()  # committed, never acked

    async with consuming(settings, engine, js):
        await eventually(lambda: acked_through(js, settings.order_events.consumer, ack.seq))

    delivered = (await consumer_info(js, settings.order_events.consumer)).delivered
    assert delivered is not None
    assert delivered.consumer_seq == 2  # one message, delivered twice
    await assert_awarded_once(engine, customer, event.id, points=50)
    assert await dead_letters(js, settings.order_events.consumer) == []


async def test_stopping_the_consumer_finishes_the_message_in_flight(
    settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext
) -> None:
    """A transaction of the test's own holds the event's dedupe row, so the handler waits on it;
    the consumer is stopped meanwhile, and must let that handler commit and ack before it ends."""
    patient = settings.order_events.model_copy(update={"handler_timeout_seconds": 5.0, "ack_wait_seconds": 12.0})
    settings = settings.model_copy(update={"order_events": patient})
    customer = new_customer_id()
    event = order_created(customer, total_cents=700)
    task = asyncio.create_task(consume(order_events(settings, engine), settings))
    try:
        async with engine.connect() as blocker:
            await blocker.execute(text("INSERT INTO processed_events (event_id) VALUES (:id)"), {"id": event.id})
            await eventually(lambda: consumer_exists(js, settings.order_events.consumer))
            ack = await publish(js, event)
            await eventually(lambda: handler_waits_on_a_lock(engine))

            task.cancel()  # what serve() does on SIGTERM
            done, _ = await asyncio.wait({task}, timeout=0.5)
            assert not done, "the consumer stopped without waiting for its in-flight message"
            await blocker.rollback()  # the handler may now claim the event
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), TIMEOUT)
    finally:
        task.cancel()

    assert await acked_through(js, settings.order_events.consumer, ack.seq)
    awarded = await balance(engine, customer)
    assert (awarded.points, awarded.orders_awarded) == (7, 1)


async def test_the_consumer_resumes_after_a_broker_restart(
    settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext, infra: Infrastructure
) -> None:
    if infra.nats is None:
        pytest.skip("the NATS server is not ours to restart")
    customer = new_customer_id()

    async with consuming(settings, engine, js):
        before = await publish(js, order_created(customer, total_cents=100))
        await eventually(lambda: acked_through(js, settings.order_events.consumer, before.seq))
        await asyncio.to_thread(infra.nats.stop)
        await asyncio.to_thread(infra.nats.start)
        after = await publish_when_reconnected(js, order_created(customer, total_cents=200))
        await eventually(lambda: acked_through(js, settings.order_events.consumer, after.seq), within=30)

    awarded = await balance(engine, customer)
    assert (awarded.points, awarded.orders_awarded) == (3, 2)
