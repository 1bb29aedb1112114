"""The PointsAwarded announcement of an award is the same event however often it is rebuilt:
its ids derive from the order id and its payload from the award."""

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from loyalty.announcing_points import points_awarded_event, publish_id
from loyalty.awarding_points import Award, Outcome
from orderflow_contracts.cloudevents import REQUEST_ID, MalformedEvent
from orderflow_contracts.events import OrderCreatedV1, PointsAwardedV1, read_order_created, read_points_awarded

AWARD = Award(Outcome.AWARDED, uuid.uuid4(), "cust-1", 25, 40, datetime(2026, 11, 24, 12, 0, tzinfo=UTC))


def test_an_award_announced_again_is_the_same_event() -> None:
    again = replace(AWARD, outcome=Outcome.DUPLICATE)

    first, second = points_awarded_event(AWARD), points_awarded_event(again)

    assert (first.to_headers(publish_id(AWARD)), first.data) == (second.to_headers(publish_id(again)), second.data)
    assert publish_id(AWARD) == f"points-awarded:{AWARD.order_id}"


def test_each_order_has_an_announcement_id_of_its_own() -> None:
    other = replace(AWARD, order_id=uuid.uuid4())

    assert points_awarded_event(AWARD).id != points_awarded_event(other).id
    assert str(uuid.UUID(points_awarded_event(AWARD).id)) == points_awarded_event(AWARD).id


def test_an_announcement_reads_back_as_points_awarded_v1_with_the_request_id_carried_along() -> None:
    event = points_awarded_event(AWARD, {REQUEST_ID: "req-1", "ce-type": "ignored", "Nats-Msg-Id": "ignored"})

    read = read_points_awarded(event.to_headers(publish_id(AWARD)), event.data)

    assert read.event_id == event.id
    assert read.award == PointsAwardedV1(
        order_id=AWARD.order_id, customer_id="cust-1", points=25, balance_after=40, awarded_at=AWARD.awarded_at
    )
    assert (event.type, event.subject, event.time, event.extensions) == (
        PointsAwardedV1.TYPE,
        str(AWARD.order_id),
        AWARD.awarded_at,
        {REQUEST_ID: "req-1"},
    )


def test_an_announcement_is_no_order_created() -> None:
    event = points_awarded_event(AWARD)

    with pytest.raises(MalformedEvent, match=OrderCreatedV1.TYPE):
        read_order_created(event.to_headers(), event.data)
