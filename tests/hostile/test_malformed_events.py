"""Malformed messages on orders.created, against the real loyalty consumer: every one is
dead-lettered at once (reason `permanent`, one delivery, the error saying why), and the consumer
keeps going: the valid event published after it is awarded.

One consumer serves the whole module; each case uses a fresh customer and finds its dead letter by
the stream sequence it was published at."""

import json
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import nats
import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError
from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty.main import MIGRATIONS
from loyalty.settings import LoyaltyConsumer, LoyaltySettings
from orderflow_contracts.streams import DEAD_LETTER_STREAM, ORDER_CREATED_SUBJECT, ORDERS_STREAM
from orderflow_devstack.infra import Infrastructure, free_port
from orderflow_kit.dead_letters import DeadLetter, list_dead_letters
from orderflow_kit.nats import ORDERS_MAX_MESSAGE_BYTES, ensure_streams
from tests.hostile.strategies import HOSTILE_EXAMPLES, INT64_MAX, odd_text
from tests.integration.loyalty.helpers import balance, consuming, new_customer_id, rows
from tests.support.databases import database_engine, fresh_database
from tests.support.events import order_created, order_created_payload, publish
from tests.support.jetstream import acked_through, impatient
from tests.support.polling import eventually
from tests.support.services import session_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

Message = tuple[dict[str, str], bytes]


@dataclass(frozen=True)
class Consumer:
    settings: LoyaltySettings
    engine: AsyncEngine
    connection: Client
    js: JetStreamContext


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def consumer(infra: Infrastructure) -> AsyncIterator[Consumer]:
    """The loyalty consumer on a database of its own, with a durable consumer that sees only new events."""
    async with fresh_database(infra.postgres_url, "loyalty", MIGRATIONS) as database:
        settings = LoyaltySettings(
            **session_settings(infra, shutdown_grace_seconds=0.5),
            loyalty_database=database,
            order_events=impatient(
                LoyaltyConsumer, "loyalty-hostile", handler_timeout_seconds=2.0, ack_wait_seconds=5.0
            ),
            loyalty_port=free_port(),
        )
        connection = await nats.connect(infra.nats_url)
        js = connection.jetstream()
        await ensure_streams(js)
        try:
            async with database_engine(infra.postgres_url, database) as engine, consuming(settings, engine, js):
                yield Consumer(settings, engine, connection, js)
        finally:
            with suppress(NotFoundError):
                await js.delete_consumer(ORDERS_STREAM, settings.order_events.consumer)
            await connection.close()


async def publish_raw(consumer: Consumer, message: Message) -> int:
    """Publish as a careless producer would (no checks at all); returns the stream sequence."""
    headers, body = message
    ack = await consumer.js.publish(ORDER_CREATED_SUBJECT, body, headers=headers or None)
    return ack.seq


async def dead_letters_so_far(consumer: Consumer) -> int:
    """The DEAD_LETTERS stream's last sequence: later dead letters are looked for after it."""
    return int((await consumer.js.stream_info(DEAD_LETTER_STREAM)).state.last_seq)


async def dead_letter_of(consumer: Consumer, sequence: int, *, after: int) -> DeadLetter | None:
    """The consumer's dead letter of the ORDERS message at `sequence`, stored after `after`."""
    subject = f"dlq.{consumer.settings.order_events.consumer}.>"
    letters = await list_dead_letters(consumer.js, subject=subject, after=after)
    return next((letter for letter in letters if letter.headers.get("dlq-stream-sequence") == str(sequence)), None)


async def assert_dead_lettered_and_the_consumer_goes_on(consumer: Consumer, message: Message) -> None:
    customer = new_customer_id()
    before = await dead_letters_so_far(consumer)
    poisoned = await publish_raw(consumer, message)
    after = await publish(consumer.js, order_created(customer, total_cents=1200))
    await eventually(lambda: acked_through(consumer.js, consumer.settings.order_events.consumer, after.seq))

    assert (await balance(consumer.engine, customer)).points == 12
    letter = await dead_letter_of(consumer, poisoned, after=before)
    assert letter is not None, "no dead letter"
    assert (letter.reason, letter.headers["dlq-deliveries"]) == ("permanent", "1"), letter.error
    assert letter.error
    assert letter.body == message[1]


# --- the table ---------------------------------------------------------------------------------


def valid_message() -> Message:
    event = order_created(new_customer_id())
    return event.to_headers(), event.data


def with_body(body: bytes) -> Callable[[], Message]:
    return lambda: (valid_message()[0], body)


def with_payload(**changes: Any) -> Callable[[], Message]:
    """A valid event whose payload has `changes` (a value of None removes the field)."""

    def message() -> Message:
        headers, _ = valid_message()
        payload = {**order_created_payload(new_customer_id(), 2599), **changes}
        return headers, json.dumps({name: value for name, value in payload.items() if value is not None}).encode()

    return message


def with_headers(**changes: str | None) -> Callable[[], Message]:
    """A valid event whose headers have `changes` (ce_id names ce-id; None removes the header)."""

    def message() -> Message:
        headers, body = valid_message()
        for name, value in changes.items():
            header = name.replace("_", "-")
            if value is None:
                headers.pop(header)
            else:
                headers[header] = value
        return headers, body

    return message


def header_bytes(headers: dict[str, str]) -> int:
    """The size of a NATS header block: `NATS/1.0`, a line per header, an empty line."""
    return len("NATS/1.0\r\n\r\n") + sum(len(f"{name}: {value}\r\n".encode()) for name, value in headers.items())


def of_size(size: int) -> Message:
    """An event whose payload fails validation, `size` bytes in all (headers included)."""
    headers, _ = valid_message()
    empty = b'{"padding": ""}'
    return headers, empty[:-2] + b"x" * (size - header_bytes(headers) - len(empty)) + empty[-2:]


ONE_LINE = {"sku": "SKU-1", "quantity": 1, "unit_price_cents": 2599}

MALFORMED: dict[str, Callable[[], Message]] = {
    "body not JSON": with_body(b"this is not JSON"),
    "body not UTF-8": with_body(b'{"order_id": "\xff\xfe\x80"}'),
    "body empty": with_body(b""),
    "body a JSON array": with_body(b"[]"),
    "body a JSON string": with_body(b'"order"'),
    "body JSON null": with_body(b"null"),
    "body a number": with_body(b"1e999"),
    "body nested deeper than any parser goes": with_body(b"[" * 100_000 + b"]" * 100_000),
    "order_id a number": with_payload(order_id=42),
    "order_id not a UUID": with_payload(order_id="order-1"),
    "customer_id a list": with_payload(customer_id=["c"]),
    "customer_id with a NUL": with_payload(customer_id="c\x00"),
    "items an object": with_payload(items={"sku": "SKU-1"}),
    "items empty": with_payload(items=[]),
    "quantity a string": with_payload(items=[{**ONE_LINE, "quantity": "1"}]),
    "quantity negative": with_payload(items=[{**ONE_LINE, "quantity": -1}]),
    "total_cents a string": with_payload(total_cents="2599"),
    "total_cents a float": with_payload(total_cents=25.99),
    "total_cents negative": with_payload(total_cents=-5),
    "total_cents beyond 64 bits": with_payload(total_cents=INT64_MAX + 1),
    "total_cents far beyond 64 bits": with_payload(total_cents=10**400),
    "unit price beyond 64 bits": with_payload(items=[{**ONE_LINE, "unit_price_cents": INT64_MAX + 1}]),
    "created_at not a time": with_payload(created_at="yesterday"),
    "currency lower case": with_payload(currency="eur"),
    "customer_id missing": with_payload(customer_id=None),
    "an unknown field": with_payload(coupon="FREE"),
    "no headers at all": lambda: ({}, valid_message()[1]),
    "without ce-specversion": with_headers(ce_specversion=None),
    "without ce-id": with_headers(ce_id=None),
    "without ce-type": with_headers(ce_type=None),
    "without ce-source": with_headers(ce_source=None),
    "without ce-time": with_headers(ce_time=None),
    "ce-specversion 0.3": with_headers(ce_specversion="0.3"),
    "unknown ce-type": with_headers(ce_type="orderflow.orders.order_shipped.v1"),
    "unknown version": with_headers(ce_type="orderflow.orders.order_created.v2"),
    "ce-type with odd unicode": with_headers(ce_type="orderflow.orders.order_created.v1\u202e"),
    "ce-time not a time": with_headers(ce_time="yesterday"),
    "ce-time out of range": with_headers(ce_time="2026-13-45T99:99:99Z"),
    "ce-time in other digits": with_headers(ce_time="\uff12\uff10\uff12\uff16-01-01T00:00:00+00:00"),
    "content-type text/plain": with_headers(content_type="text/plain"),
}


@pytest.mark.parametrize("case", MALFORMED)
async def test_a_malformed_event_is_dead_lettered_at_once_and_the_next_is_awarded(
    consumer: Consumer, case: str
) -> None:
    await assert_dead_lettered_and_the_consumer_goes_on(consumer, MALFORMED[case]())


async def test_an_event_as_big_as_the_stream_takes_is_dead_lettered_and_the_next_is_awarded(
    consumer: Consumer,
) -> None:
    await assert_dead_lettered_and_the_consumer_goes_on(consumer, of_size(ORDERS_MAX_MESSAGE_BYTES))


async def test_an_event_too_big_to_dead_letter_is_refused_to_its_producer(consumer: Consumer) -> None:
    """Refused by the stream, with the connection intact: a broker would drop the connection of
    whoever tried to store it as a dead letter (over max_payload with the dead letter's headers)."""
    with pytest.raises(BadRequestError, match="message size exceeds maximum allowed"):
        await publish_raw(consumer, of_size(ORDERS_MAX_MESSAGE_BYTES + 1))

    assert consumer.connection.is_connected


# --- generated payloads ------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from([-1, 0, INT64_MAX, INT64_MAX + 1, 10**30]),
        st.floats(allow_nan=False),
        st.text(),
        odd_text,
    ),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(), children, max_size=3)),
    max_leaves=5,
)
PAYLOAD_FIELDS = list(order_created_payload("c", 0))
LINE_FIELDS = list(ONE_LINE)


@st.composite
def mutated_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """A valid payload with one field (or one field of its line) replaced, removed or added."""
    payload: dict[str, Any] = order_created_payload(new_customer_id(), draw(st.integers(min_value=0, max_value=10**6)))
    target = payload
    if draw(st.booleans()):
        target = payload["items"][0]
    field = draw(st.sampled_from(LINE_FIELDS if target is not payload else PAYLOAD_FIELDS) | st.text(max_size=10))
    if draw(st.booleans()):
        target.pop(field, None)
    else:
        target[field] = draw(json_values)
    return payload


@given(payload=mutated_payloads())
@settings(HOSTILE_EXAMPLES, max_examples=25)  # each example waits for the consumer
async def test_any_payload_is_awarded_or_dead_lettered_at_once(consumer: Consumer, payload: dict[str, Any]) -> None:
    """Whatever the payload, one delivery decides: awarded, or a permanent dead letter; never a retry."""
    event = order_created(new_customer_id(), body=json.dumps(payload).encode())
    before = await dead_letters_so_far(consumer)
    ack = await publish(consumer.js, event)
    await eventually(lambda: acked_through(consumer.js, consumer.settings.order_events.consumer, ack.seq))

    letter = await dead_letter_of(consumer, ack.seq, after=before)
    if letter is None:
        assert await rows(consumer.engine, "ledger", event.id) == 1
    else:
        assert (letter.reason, letter.headers["dlq-deliveries"]) == ("permanent", "1"), letter.error
