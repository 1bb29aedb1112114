"""A poison message never blocks the stream: a bad message is dead-lettered at once; a message
that keeps failing for another reason is retried with backoff up to max_deliver, then
dead-lettered as exhausted. Either way the next event is processed."""

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty.settings import LoyaltySettings
from orderflow_contracts.cloudevents import CloudEvent
from orderflow_devstack.infra import Infrastructure, free_port
from orderflow_kit.db import create_engine
from tests.integration.loyalty.helpers import (
    DatabaseOutage,
    balance,
    consumer_info,
    consuming,
    dead_letters,
    new_customer_id,
)
from tests.support.events import order_created, order_created_payload, publish
from tests.support.jetstream import acked_through
from tests.support.polling import eventually

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def without_ce_headers(event: CloudEvent) -> dict[str, str]:
    return {"content-type": "application/json", "Nats-Msg-Id": event.id}


MALFORMED: dict[str, Callable[[str], CloudEvent]] = {
    "not JSON": lambda customer: order_created(customer, body=b"this is not JSON"),
    "unknown type": lambda customer: order_created(customer, event_type="orderflow.orders.order_shipped.v1"),
    "unknown version": lambda customer: order_created(customer, event_type="orderflow.orders.order_created.v2"),
    "payload failing validation": lambda customer: order_created(
        customer, body=json.dumps(order_created_payload(customer, total_cents=-5)).encode()
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
async def test_a_malformed_message_is_dead_lettered_at_once_and_the_next_event_is_processed(
    case: str, settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext
) -> None:
    customer = new_customer_id()
    poison = MALFORMED[case](customer)
    valid = order_created(customer, total_cents=1200)

    async with consuming(settings, engine, js):
        poisoned = await publish(js, poison)
        after = await publish(js, valid)
        await eventually(lambda: acked_through(js, settings.order_events.consumer, after.seq))

    assert (await balance(engine, customer)).points == 12
    [letter] = await dead_letters(js, settings.order_events.consumer)
    assert letter.subject == f"dlq.{settings.order_events.consumer}.orders.created"
    assert letter.body == poison.data
    assert {name: letter.headers[name] for name in poison.to_headers() if name != "Nats-Msg-Id"} == {
        name: value for name, value in poison.to_headers().items() if name != "Nats-Msg-Id"
    }
    assert letter.headers["dlq-original-Nats-Msg-Id"] == poison.id
    assert letter.reason == "permanent"
    assert letter.headers["dlq-deliveries"] == "1"
    assert letter.headers["dlq-stream-sequence"] == str(poisoned.seq)
    assert letter.headers["dlq-consumer"] == settings.order_events.consumer
    assert letter.original_subject == "orders.created"
    assert letter.error
    assert letter.error_class in {"MalformedEvent", "ValidationError"}
    assert letter.first_failure_at
    assert letter.dead_lettered_at


async def test_a_message_without_cloudevents_headers_is_dead_lettered_at_once(
    settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext
) -> None:
    customer = new_customer_id()
    bare = order_created(customer)

    async with consuming(settings, engine, js):
        ack = await js.publish("orders.created", bare.data, headers=without_ce_headers(bare))
        after = await publish(js, order_created(customer, total_cents=300))
        await eventually(lambda: acked_through(js, settings.order_events.consumer, after.seq))

    assert (await balance(engine, customer)).points == 3
    [letter] = await dead_letters(js, settings.order_events.consumer)
    assert (letter.reason, letter.headers["dlq-deliveries"]) == ("permanent", "1")
    assert letter.headers["dlq-stream-sequence"] == str(ack.seq)
    assert "missing CloudEvents headers: ce-specversion, ce-id" in (letter.error or "")


async def test_an_unreachable_database_is_retried_max_deliver_times_then_dead_lettered_as_exhausted(
    settings: LoyaltySettings, js: JetStreamContext
) -> None:
    nobody_listens = create_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", settings.loyalty_database)
    event = order_created(new_customer_id(), traceparent=TRACEPARENT)
    published_at = datetime.now(UTC)
    try:
        async with consuming(settings, nobody_listens, js):
            ack = await publish(js, event)
            await eventually(lambda: acked_through(js, settings.order_events.consumer, ack.seq))
    finally:
        await nobody_listens.dispose()

    delivered = (await consumer_info(js, settings.order_events.consumer)).delivered
    assert delivered is not None
    assert delivered.consumer_seq == settings.order_events.max_deliver == 3  # one message, three deliveries
    [letter] = await dead_letters(js, settings.order_events.consumer)
    assert letter.reason == "exhausted"
    assert letter.headers["dlq-deliveries"] == "3"
    assert letter.event_id == event.id
    assert letter.body == event.data
    assert (letter.error or "").startswith("max_deliver (3) exhausted; last error: ")
    assert "Connect call failed" in (letter.error or "")
    assert letter.error_class == "ConnectionRefusedError"
    assert letter.traceparent == TRACEPARENT
    # The first failure is the first delivery's, kept across the redeliveries that followed.
    assert letter.first_failure_at is not None
    assert letter.dead_lettered_at is not None
    first_failure = datetime.fromisoformat(letter.first_failure_at)
    assert published_at <= first_failure < datetime.fromisoformat(letter.dead_lettered_at)


async def test_a_database_that_comes_back_before_max_deliver_gets_the_event_awarded_once(
    settings: LoyaltySettings, js: JetStreamContext, infra: Infrastructure
) -> None:
    patient = settings.order_events.model_copy(update={"max_deliver": 5, "retry_base_seconds": 0.3})
    settings = settings.model_copy(update={"order_events": patient})
    outage = DatabaseOutage(infra.postgres_url)
    engine = create_engine(outage.url, settings.loyalty_database)
    customer = new_customer_id()
    event = order_created(customer, total_cents=900)
    try:
        async with consuming(settings, engine, js):
            ack = await publish(js, event)
            await eventually(lambda: delivered_at_least(js, settings.order_events.consumer, 2))  # a retry happened
            await outage.end()
            await eventually(lambda: acked_through(js, settings.order_events.consumer, ack.seq))
        awarded = await balance(engine, customer)
    finally:
        await engine.dispose()
        await outage.close()

    assert (awarded.points, awarded.orders_awarded) == (9, 1)
    assert await dead_letters(js, settings.order_events.consumer) == []


async def delivered_at_least(js: JetStreamContext, consumer: str, deliveries: int) -> bool:
    delivered = (await consumer_info(js, consumer)).delivered
    return delivered is not None and (delivered.consumer_seq or 0) >= deliveries
