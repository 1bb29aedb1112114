"""Events are awarded in batches, one transaction per batch, against real PostgreSQL and NATS,
with the semantics of one event at a time: a duplicate in a batch is skipped alone, and a poison
message in a batch is dead-lettered alone, never taking its neighbours with it."""

import asyncio
import dataclasses

from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty.awarding_points import Outcome, award_points
from loyalty.settings import LoyaltySettings
from orderflow_contracts.cloudevents import CloudEvent
from orderflow_contracts.events import MAX_POINTS, OrderCreated, read_order_created
from orderflow_kit.consumer_settings import ensure_consumer
from tests.integration.loyalty.helpers import (
    TIMEOUT,
    balance,
    consuming,
    dead_letters,
    handler_waits_on_a_lock,
    new_customer_id,
    rows,
)
from tests.support.events import order_created, publish
from tests.support.jetstream import acked_through
from tests.support.polling import eventually


def read(event: CloudEvent) -> OrderCreated:
    return read_order_created(event.to_headers(), event.data)


async def test_a_batch_awards_each_event_once_with_the_balance_right_after_it(engine: AsyncEngine) -> None:
    alice, bob = new_customer_id(), new_customer_id()
    earlier = order_created(alice, total_cents=1000)
    [first] = await award_points(engine, [read(earlier)])
    a1, b1, a2 = order_created(alice, 500), order_created(bob, 700), order_created(alice, 300)

    awards = await award_points(engine, [read(a1), read(b1), read(earlier), read(a2), read(a1)])

    assert [award.outcome for award in awards] == [
        Outcome.AWARDED,
        Outcome.AWARDED,
        Outcome.DUPLICATE,  # processed in an earlier batch: answered as then
        Outcome.AWARDED,
        Outcome.DUPLICATE,  # a second copy in the same batch
    ]
    assert [award.balance_after for award in awards] == [15, 7, 10, 18, 15]
    assert awards[2] == dataclasses.replace(first, outcome=Outcome.DUPLICATE)
    assert awards[4].awarded_at == awards[0].awarded_at
    assert ((await balance(engine, alice)).points, (await balance(engine, alice)).orders_awarded) == (18, 3)
    assert ((await balance(engine, bob)).points, (await balance(engine, bob)).orders_awarded) == (7, 1)
    assert await rows(engine, "ledger", a1.id) == 1


async def test_an_event_a_concurrent_batch_claimed_is_answered_with_that_batchs_award(engine: AsyncEngine) -> None:
    """A redelivery while the first delivery's batch is still in its transaction: the second batch
    waits on the event's dedupe row, sees the first commit, and answers the first one's award
    (its ledger entry committed after the second statement began: it is read after it)."""
    alice = new_customer_id()
    event = order_created(alice, total_cents=1200)
    neighbour = order_created(alice, total_cents=300)
    async with engine.connect() as first_batch:
        await first_batch.execute(text("INSERT INTO processed_events (event_id) VALUES (:id)"), {"id": event.id})
        await first_batch.execute(
            text(
                "INSERT INTO ledger (customer_id, order_id, event_id, points, balance_after)"
                " VALUES (:customer, :order_id, :id, 12, 12)"
            ),
            {"customer": alice, "order_id": read(event).order.order_id, "id": event.id},
        )
        second_batch = asyncio.create_task(award_points(engine, [read(event), read(neighbour)]))
        await eventually(lambda: handler_waits_on_a_lock(engine))
        await first_batch.commit()
    duplicate, awarded = await asyncio.wait_for(second_batch, TIMEOUT)

    assert (duplicate.outcome, duplicate.points, duplicate.balance_after) == (Outcome.DUPLICATE, 12, 12)
    assert (awarded.outcome, awarded.points) == (Outcome.AWARDED, 3)
    assert await rows(engine, "ledger", event.id) == 1


async def test_events_waiting_in_the_stream_are_awarded_in_one_transaction(
    settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext
) -> None:
    """Published before the consumer runs, they arrive together: their ledger entries share their
    transaction's time (PostgreSQL's now() is the transaction's start), so there are fewer distinct
    times than events (a pull may bring them in more than one batch)."""
    await ensure_consumer(js, settings.order_events)
    events = [order_created(new_customer_id(), total_cents=100 * n) for n in range(1, 21)]
    acks = [await publish(js, event) for event in events]

    async with consuming(settings, engine, js):
        await eventually(lambda: acked_through(js, settings.order_events.consumer, acks[-1].seq))

    async with engine.connect() as connection:
        times = await connection.scalars(
            text("SELECT DISTINCT created_at FROM ledger WHERE event_id = ANY(:ids)"), {"ids": [e.id for e in events]}
        )
        assert len(list(times)) < len(events)


async def test_a_poison_message_and_a_refused_award_in_a_batch_are_dead_lettered_alone(
    settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext
) -> None:
    """One unreadable body, and one award that aborts the batch's transaction (the balance would
    overflow), beside good events and a duplicate: each bad one is dead-lettered after ONE
    delivery, every good one is awarded once, the duplicate is no failure."""
    overflowing_customer = new_customer_id()
    async with engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO balances (customer_id, points, orders_awarded) VALUES (:customer, :points, 1)"),
            {"customer": overflowing_customer, "points": MAX_POINTS - 5},
        )
    good = [order_created(new_customer_id(), total_cents=100 * n) for n in range(1, 5)]
    poison = order_created(new_customer_id(), body=b"{not json")
    overflowing = order_created(overflowing_customer, total_cents=1000)
    await ensure_consumer(js, settings.order_events)
    sent = [good[0], poison, good[1], overflowing, good[2], good[0], good[3]]
    acks = [await publish(js, event, msg_id=f"{event.id}-{position}") for position, event in enumerate(sent)]

    async with consuming(settings, engine, js):
        await eventually(lambda: acked_through(js, settings.order_events.consumer, acks[-1].seq))

    letters = await dead_letters(js, settings.order_events.consumer)
    assert sorted((letter.event_id, letter.reason, letter.deliveries) for letter in letters) == sorted(
        [(poison.id, "permanent", "1"), (overflowing.id, "permanent", "1")]
    )
    for event in good:
        assert await rows(engine, "ledger", event.id) == 1
    assert await rows(engine, "ledger", overflowing.id) == 0
    assert (await balance(engine, overflowing_customer)).points == MAX_POINTS - 5
