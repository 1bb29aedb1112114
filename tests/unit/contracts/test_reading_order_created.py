"""Which messages a consumer can read as OrderCreated, and which are permanently bad (dead-lettered at once)."""

import json

import pytest
from pydantic import ValidationError

from orderflow_contracts.cloudevents import MalformedEvent
from orderflow_contracts.events import OrderCreatedV1, read_order_created
from tests.support.events import order_created, order_created_payload


def message(body: bytes, event_type: str = OrderCreatedV1.TYPE) -> tuple[dict[str, str], bytes]:
    event = order_created(body=body, event_type=event_type)
    return event.to_headers(), event.data


def test_a_valid_order_created_v1_is_read_with_its_ce_id() -> None:
    headers, body = message(json.dumps(order_created_payload(total_cents=2198)).encode())

    event = read_order_created(headers, body)

    assert event.event_id == headers["ce-id"]
    assert event.order.total_cents == 2198


@pytest.mark.parametrize("header", ["ce-id", "ce-type", "ce-specversion", "ce-source", "ce-time"])
def test_a_message_missing_a_cloudevents_header_is_malformed(header: str) -> None:
    headers, body = message(json.dumps(order_created_payload()).encode())
    del headers[header]

    with pytest.raises(MalformedEvent, match=header):
        read_order_created(headers, body)


def test_a_message_without_headers_is_malformed() -> None:
    with pytest.raises(MalformedEvent):
        read_order_created(None, json.dumps(order_created_payload()).encode())


@pytest.mark.parametrize("event_type", ["orderflow.orders.order_created.v2", "orderflow.orders.order_cancelled.v1"])
def test_an_unknown_event_type_or_version_is_malformed(event_type: str) -> None:
    headers, body = message(json.dumps(order_created_payload()).encode(), event_type)

    with pytest.raises(MalformedEvent, match="unsupported ce-type"):
        read_order_created(headers, body)


def test_an_unknown_version_says_which_version_this_consumer_reads() -> None:
    headers, body = message(json.dumps(order_created_payload()).encode(), "orderflow.orders.order_created.v2")

    with pytest.raises(MalformedEvent, match=r"v2 of orderflow\.orders\.order_created is unknown here .*reads v1"):
        read_order_created(headers, body)


def test_a_body_that_is_not_json_fails_validation() -> None:
    headers, body = message(b"not json {")

    with pytest.raises(ValidationError):
        read_order_created(headers, body)


@pytest.mark.parametrize(
    "changes",
    [{"total_cents": -1}, {"customer_id": "no spaces allowed"}, {"items": []}, {"currency": "euro"}, {"extra": 1}],
)
def test_a_payload_failing_validation_fails_validation(changes: dict[str, object]) -> None:
    headers, body = message(json.dumps({**order_created_payload(), **changes}).encode())

    with pytest.raises(ValidationError):
        read_order_created(headers, body)


def test_a_non_json_content_type_is_malformed() -> None:
    headers, body = message(json.dumps(order_created_payload()).encode())
    headers["content-type"] = "text/plain"

    with pytest.raises(MalformedEvent, match="content-type"):
        read_order_created(headers, body)
