"""The live feed's pure parts: the position an event id encodes, and what each stream message
becomes (gateway.event_feed). The feed itself runs against real NATS in tests/e2e/test_live_events.py."""

import json
import re
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.event_feed import (
    EVENT_ID_PATTERN,
    FeedScope,
    InvalidPosition,
    LiveEvent,
    Position,
    dead_letter_event,
    order_event,
)
from inventory.announcing_stock import stock_confirmed_event
from inventory.reservations import Confirmation
from orderflow_contracts.cloudevents import CloudEvent
from orderflow_contracts.events import OrderCreatedV1, PointsAwardedV1, read_order_created
from orderflow_kit.dead_letters import CONSUMER, ERROR, ERROR_CLASS, ORIGINAL_SUBJECT, REASON, DeadLetter
from tests.support.events import order_created

ORDER_ID = uuid.UUID("0b7e8f4c-3a64-4c55-9d0e-4b8a2f7c1d23")
NOW = datetime(2026, 11, 20, 10, 15, tzinfo=UTC)


def cloud_event(event_type: str, payload: bytes, subject: str | None = str(ORDER_ID)) -> CloudEvent:
    return CloudEvent(id=str(uuid.uuid4()), type=event_type, source="tests", time=NOW, data=payload, subject=subject)


def order_of_customer_42() -> CloudEvent:
    return order_created("customer-42", 2500, order_id=ORDER_ID, created_at=NOW)


def points_awarded() -> CloudEvent:
    award = PointsAwardedV1(order_id=ORDER_ID, customer_id="customer-42", points=25, balance_after=40, awarded_at=NOW)
    return cloud_event(PointsAwardedV1.TYPE, award.model_dump_json().encode())


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("0.0", Position(0, 0)),
        ("1042.7", Position(1042, 7)),
        (f"{10**19 - 1}.1", Position(10**19 - 1, 1)),
    ],
)
def test_an_event_id_is_the_position_in_both_streams_and_back(text: str, position: Position) -> None:
    assert Position.parse(text) == position
    assert str(position) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "12",
        "1.2.3",
        "-1.0",
        "1.x",
        " . ",
        "1e3.0",
        "+1.0",
        "\u0661.0",
        f"1.{10**19}",
        "1" * 21 + ".0",
        "01.0",
        "1.00",
        " 1.0",
        "1.0\n",
        "null",
    ],
)
def test_anything_else_is_not_a_position(text: str) -> None:
    assert re.fullmatch(EVENT_ID_PATTERN, text) is None
    with pytest.raises(InvalidPosition):
        Position.parse(text)


@given(st.from_regex(EVENT_ID_PATTERN, fullmatch=True))
def test_every_event_id_of_the_documented_shape_is_a_position(text: str) -> None:
    """The OpenAPI document's pattern for Last-Event-ID is exactly what the gateway accepts."""
    assert str(Position.parse(text)) == text


def test_an_order_created_event_carries_the_order_and_its_event_id() -> None:
    event = order_of_customer_42()

    live = order_event("orders.created", event.to_headers(), event.data)

    assert live == LiveEvent(
        "order.created",
        str(ORDER_ID),
        {
            "event_id": event.id,
            "order_id": str(ORDER_ID),
            "customer_id": "customer-42",
            "items": [{"sku": "SKU-1", "quantity": 1, "unit_price_cents": 2500}],
            "total_cents": 2500,
            "currency": "EUR",
            "created_at": "2026-11-20T10:15:00Z",
        },
        dedupe_key=event.id,
    )


def stock_confirmed(confirmation: Confirmation, now: datetime | None = None) -> CloudEvent:
    created = read_order_created(order_of_customer_42().to_headers(), order_of_customer_42().data)
    return stock_confirmed_event(created, confirmation, now=now)


@pytest.mark.parametrize(
    ("subject", "event", "name", "data"),
    [
        (
            "orders.points_awarded",
            points_awarded(),
            "points.awarded",
            {"points": 25, "balance_after": 40, "awarded_at": "2026-11-20T10:15:00Z"},
        ),
        (
            "orders.stock_confirmed",
            stock_confirmed(Confirmation.CONFIRMED, now=NOW),
            "stock.confirmed",
            {"items": [{"sku": "SKU-1", "quantity": 1}], "late": False, "confirmed_at": "2026-11-20T10:15:00Z"},
        ),
    ],
    ids=["points awarded", "stock confirmed"],
)
def test_a_later_event_of_an_order_carries_its_news_and_dedupes_on_its_ce_id(
    subject: str, event: CloudEvent, name: str, data: dict[str, object]
) -> None:
    live = order_event(subject, event.to_headers(), event.data)

    assert live is not None
    assert (live.name, live.order_id, live.dedupe_key) == (name, str(ORDER_ID), event.id)
    assert live.data == {"event_id": event.id, "order_id": str(ORDER_ID), "customer_id": "customer-42", **data}


def test_every_announcement_of_an_orders_stock_is_the_same_event() -> None:
    """Whatever the outcome and whenever it is announced, so a consumer dedupes the repeats."""
    assert stock_confirmed(Confirmation.DUPLICATE).id == stock_confirmed(Confirmation.CONFIRMED, now=NOW).id


def test_unreadable_events_and_other_subjects_are_not_shown() -> None:
    created = order_of_customer_42()

    assert order_event("orders.created", created.to_headers(), b'{"order_id": "not even json') is None
    assert order_event("orders.created", {}, created.data) is None
    assert order_event("orders.points_awarded", created.to_headers(), created.data) is None  # the wrong ce-type
    assert order_event("orders.shipped", created.to_headers(), created.data) is None


def dead_letter(headers: dict[str, str], body: bytes) -> DeadLetter:
    return DeadLetter(
        sequence=8,
        subject="dlq.loyalty.orders.created",
        headers={
            **headers,
            REASON: "permanent",
            ERROR: "1 validation error for OrderCreatedV1",
            ERROR_CLASS: "ValidationError",
            CONSUMER: "loyalty",
            ORIGINAL_SUBJECT: "orders.created",
            "dlq-at": "2026-11-20T10:16:02+00:00",
        },
        body=body,
    )


def test_a_dead_letter_names_the_order_from_its_ce_subject_and_shows_errors_only_when_asked() -> None:
    event = cloud_event(OrderCreatedV1.TYPE, b"not json at all")
    letter = dead_letter(event.to_headers(), event.data)

    for_customer = dead_letter_event(letter, with_errors=False)
    for_admin = dead_letter_event(letter, with_errors=True)

    assert for_customer == LiveEvent(
        "order.dead_lettered",
        str(ORDER_ID),
        {
            "event_id": event.id,
            "event_type": OrderCreatedV1.TYPE,
            "order_id": str(ORDER_ID),
            "customer_id": None,
            "consumer": "loyalty",
            "original_subject": "orders.created",
            "reason": "permanent",
            "dead_letter_sequence": 8,
            "dead_lettered_at": "2026-11-20T10:16:02+00:00",
        },
    )
    assert for_admin.data == {
        **for_customer.data,
        "error_class": "ValidationError",
        "error": "1 validation error for OrderCreatedV1",
    }


def test_without_a_ce_subject_a_dead_letter_names_the_order_and_customer_its_body_names() -> None:
    body = json.dumps({"order_id": str(ORDER_ID).upper(), "customer_id": "customer-42", "total_cents": -1})
    letter = dead_letter(cloud_event(OrderCreatedV1.TYPE, b"", subject=None).to_headers(), body.encode())

    live = dead_letter_event(letter, with_errors=False)

    assert (live.order_id, live.data["customer_id"]) == (str(ORDER_ID), "customer-42")


@pytest.mark.parametrize(
    "body",
    [b"", b"[1, 2]", b'{"order_id": 42}', b'{"order_id": "not-a-uuid"}', b"[" * 100_000 + b"]" * 100_000],
    ids=["empty", "an array", "a number", "not a uuid", "nested deeper than the parser goes"],
)
def test_a_dead_letter_that_names_no_order_belongs_to_no_orders_feed(body: bytes) -> None:
    letter = dead_letter({"ce-subject": "not-an-order-id"}, body)
    live = dead_letter_event(letter, with_errors=True)

    assert live.order_id is None
    assert not FeedScope(order_id=str(ORDER_ID), since=NOW, with_errors=True).wants(live)
    assert FeedScope(order_id=None, since=None, with_errors=True).wants(live)


def test_a_feed_of_one_order_wants_only_that_orders_events() -> None:
    scope = FeedScope(order_id=str(ORDER_ID), since=NOW, with_errors=False)

    assert scope.wants(LiveEvent("order.created", str(ORDER_ID), {}))
    assert not scope.wants(LiveEvent("order.created", str(uuid.uuid4()), {}))
