"""Loyalty announces each award once, on orders.points_awarded, against real NATS and PostgreSQL:
after the commit and before the ack, from the ledger, with ids derived from the order id, so a
redelivery announces again harmlessly (the broker drops the copy) and a crash between commit and
publish still gets the event out. No consumer of orders.created ever receives it."""

import uuid
from dataclasses import replace
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.settings import InventoryConsumer
from loyalty.announcing_points import announce
from loyalty.awarding_points import Award, Outcome, award_points
from loyalty.settings import LoyaltySettings
from orderflow_contracts.cloudevents import REQUEST_ID, TRACEPARENT, CloudEvent
from orderflow_contracts.events import PointsAwarded, PointsAwardedV1, read_order_created, read_points_awarded
from orderflow_contracts.streams import ORDER_CREATED_SUBJECT, ORDERS_STREAM, POINTS_AWARDED_SUBJECT
from orderflow_devstack.infra import Infrastructure
from orderflow_kit.consumer_settings import ensure_consumer
from orderflow_kit.request_context import new_traceparent
from tests.integration.loyalty.helpers import TIMEOUT, consumer_info, consuming, dead_letters, new_customer_id
from tests.support.events import order_created, publish
from tests.support.jetstream import acked_through, delete_consumer, messages_on, new_consumer_name
from tests.support.polling import eventually


def order_id_of(event: CloudEvent) -> str:
    return str(read_order_created(event.to_headers(), event.data).order.order_id)


async def announcements(js: JetStreamContext, order_id: str, from_seq: int) -> list[RawStreamMsg]:
    """The points_awarded messages the stream holds for one order."""
    found = await messages_on(js, POINTS_AWARDED_SUBJECT, from_seq=from_seq)
    return [message for message in found if (message.headers or {}).get("ce-subject") == order_id]


def read(message: RawStreamMsg) -> PointsAwarded:
    assert message.data is not None
    return read_points_awarded(message.headers, message.data)


async def ledger_entry(engine: AsyncEngine, event_id: str) -> tuple[int, int, datetime]:
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                text("SELECT points, balance_after, created_at FROM ledger WHERE event_id = :id"), {"id": event_id}
            )
        ).one()
    return row.points, row.balance_after, row.created_at


async def test_each_award_is_announced_once_with_the_balance_after_it(
    settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext
) -> None:
    customer, request_id, traceparent = new_customer_id(), uuid.uuid4().hex, new_traceparent()
    first, second = order_created(customer, total_cents=2599), order_created(customer, total_cents=1000)
    first = replace(first, extensions={REQUEST_ID: request_id, TRACEPARENT: traceparent})

    async with consuming(settings, engine, js):
        start = (await publish(js, first)).seq
        await eventually(lambda: acked_through(js, settings.order_events.consumer, start))
        last = (await publish(js, second)).seq
        await eventually(lambda: acked_through(js, settings.order_events.consumer, last))

    [announced_first] = await announcements(js, order_id_of(first), start)
    [announced_second] = await announcements(js, order_id_of(second), start)
    read_first, read_second = read(announced_first), read(announced_second)
    awarded_at = (await ledger_entry(engine, first.id))[2]
    assert read_first.award == PointsAwardedV1(
        order_id=uuid.UUID(order_id_of(first)),
        customer_id=customer,
        points=25,
        balance_after=25,
        awarded_at=awarded_at,
    )
    assert (read_second.award.points, read_second.award.balance_after) == (10, 35)
    headers = announced_first.headers or {}
    assert headers["Nats-Msg-Id"] == f"points-awarded:{order_id_of(first)}"
    assert headers["ce-id"] == read_first.event_id == str(uuid.UUID(read_first.event_id))
    assert (headers["ce-type"], headers["ce-source"]) == (PointsAwardedV1.TYPE, "orderflow/loyalty")
    assert (headers[REQUEST_ID], headers[TRACEPARENT]) == (request_id, traceparent)
    assert read_first.event_id != read_second.event_id
    # The consumer never saw its own announcements: two deliveries, no dead letters.
    delivered = (await consumer_info(js, settings.order_events.consumer)).delivered
    assert delivered is not None
    assert delivered.consumer_seq == 2
    assert await dead_letters(js, settings.order_events.consumer) == []


async def test_a_duplicate_order_created_announces_nothing_new(
    settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext
) -> None:
    """Published again under another Nats-Msg-Id, the consumer gets it twice: the second delivery
    is a duplicate award, announced again with the same Nats-Msg-Id, which the broker drops."""
    event = order_created(new_customer_id(), total_cents=4200)

    async with consuming(settings, engine, js):
        first = await publish(js, event)
        second = await publish(js, event, msg_id=f"{event.id}-republished")
        await eventually(lambda: acked_through(js, settings.order_events.consumer, second.seq))

    assert not second.duplicate
    [announced] = await announcements(js, order_id_of(event), first.seq)
    assert read(announced).award.points == 42


async def test_an_award_committed_before_a_crash_is_announced_by_the_redelivery(
    settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext
) -> None:
    """The first delivery commits the award and dies before it publishes (or acks): the broker
    redelivers, the handler finds the dedupe row, and announces the award from the ledger."""
    event = order_created(new_customer_id(), total_cents=5000)
    await ensure_consumer(js, settings.order_events)
    ack = await publish(js, event)
    crashed = await js.pull_subscribe_bind(consumer=settings.order_events.consumer, stream=ORDERS_STREAM)
    [message] = await crashed.fetch(1, timeout=TIMEOUT)
    [award] = await award_points(engine, [read_order_created(message.headers, message.data)])
    await crashed.unsubscribe()
    assert await announcements(js, order_id_of(event), ack.seq) == []

    async with consuming(settings, engine, js):
        await eventually(lambda: acked_through(js, settings.order_events.consumer, ack.seq))

    [announced] = await announcements(js, order_id_of(event), ack.seq)
    announced_award = read(announced).award
    assert (announced_award.points, announced_award.balance_after, announced_award.awarded_at) == (
        award.points,
        award.balance_after,
        award.awarded_at,
    )
    assert (award.points, award.balance_after, award.awarded_at) == await ledger_entry(engine, event.id)


async def test_the_order_created_consumers_of_loyalty_and_inventory_never_receive_an_announcement(
    infra: Infrastructure, settings: LoyaltySettings, js: JetStreamContext
) -> None:
    inventory = InventoryConsumer(consumer=new_consumer_name("inventory"), deliver_policy="new")
    consumers = [settings.order_events, inventory]
    try:
        for consumer in consumers:
            await ensure_consumer(js, consumer)
        award = Award(Outcome.AWARDED, uuid.uuid4(), new_customer_id(), 3, 3, datetime.now(UTC))
        await announce(js, award, None)
        await publish(js, order_created(new_customer_id()))

        for consumer in consumers:
            info = await consumer_info(js, consumer.consumer)
            assert info.config.filter_subject == ORDER_CREATED_SUBJECT
            assert info.num_pending == 1  # the OrderCreated only
    finally:
        await delete_consumer(infra.nats_url, inventory.consumer)
