"""What a dead letter carries (orderflow_kit.dead_letters), without a broker."""

import json
from datetime import UTC, datetime

from nats.aio.client import _HEADER_KEY_RE
from nats.aio.msg import Msg

from orderflow_kit.dead_letters import (
    MAX_ERROR_CHARS,
    UNPUBLISHABLE_HEADERS,
    DeadLetter,
    Failed,
    Reason,
    dead_letter_headers,
    publishable_headers,
)

# $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<timestamp ns>.<pending>
REPLY = "$JS.ACK.ORDERS.loyalty.3.42.17.1763700000000000000.0"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ORIGINAL = {
    "ce-id": "event-1",
    "ce-type": "orderflow.orders.order_created.v1",
    "traceparent": TRACEPARENT,
    "Nats-Msg-Id": "event-1",
    "Nats-Expected-Stream": "ORDERS",
}
FIRST_FAILURE = datetime(2026, 11, 21, 11, 59, 30, tzinfo=UTC)


def delivered(headers: dict[str, str]) -> Msg:
    return Msg(_client=None, subject="orders.created", reply=REPLY, data=b"{}", headers=headers)  # type: ignore[arg-type]


def failed(reason: Reason = Reason.PERMANENT, error: str = "boom", error_class: str = "KeyError") -> Failed:
    return Failed(reason, error, error_class, FIRST_FAILURE)


def test_a_dead_letter_keeps_every_original_header_and_says_why_and_where_from() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

    headers = dead_letter_headers(
        delivered(ORIGINAL), consumer="loyalty", failed=failed(Reason.EXHAUSTED, "boom", "OperationalError"), now=now
    )

    assert headers["ce-id"] == "event-1"
    assert headers["traceparent"] == TRACEPARENT
    assert headers["dlq-original-Nats-Msg-Id"] == "event-1"
    assert headers["dlq-original-Nats-Expected-Stream"] == "ORDERS"
    assert headers["dlq-reason"] == "exhausted"
    assert headers["dlq-error"] == "boom"
    assert headers["dlq-error-class"] == "OperationalError"
    assert headers["dlq-consumer"] == "loyalty"
    assert headers["dlq-stream"] == "ORDERS"
    assert headers["dlq-stream-sequence"] == "42"
    assert headers["dlq-subject"] == "orders.created"
    assert headers["dlq-deliveries"] == "3"
    assert headers["dlq-first-failure-at"] == FIRST_FAILURE.isoformat()
    assert headers["dlq-at"] == now.isoformat()


def test_the_dead_letters_msg_id_is_derived_from_consumer_and_stream_sequence() -> None:
    """A crash between the dead-letter publish and the ack must not store it twice."""
    first = dead_letter_headers(delivered(ORIGINAL), consumer="loyalty", failed=failed(error="x"))
    again = dead_letter_headers(delivered(ORIGINAL), consumer="loyalty", failed=failed(error="y"))
    other_consumer = dead_letter_headers(delivered(ORIGINAL), consumer="audit", failed=failed(error="x"))

    assert first["Nats-Msg-Id"] == again["Nats-Msg-Id"] == "dlq.loyalty.ORDERS.42"
    assert other_consumer["Nats-Msg-Id"] != first["Nats-Msg-Id"]
    assert "Nats-Expected-Stream" not in first  # would otherwise be checked against DEAD_LETTERS


def test_the_error_header_is_one_bounded_line_of_ascii() -> None:
    error = "line one\nline two: caf\u00e9 " + "x" * 5000

    text = dead_letter_headers(delivered(ORIGINAL), consumer="loyalty", failed=failed(error=error))["dlq-error"]

    assert text.startswith("line one line two: caf\\xe9 ")
    assert len(text) == MAX_ERROR_CHARS
    assert text.isascii()


def test_a_dead_letter_reads_back_its_failure_and_trace_as_fields() -> None:
    headers = dead_letter_headers(delivered(ORIGINAL), consumer="loyalty", failed=failed(Reason.EXHAUSTED))
    letter = DeadLetter(sequence=7, subject="dlq.loyalty.orders.created", headers=headers, body=b"{}")

    assert (letter.reason, letter.error, letter.error_class) == ("exhausted", "boom", "KeyError")
    assert (letter.consumer, letter.deliveries, letter.original_sequence) == ("loyalty", "3", "42")
    assert letter.first_failure_at == FIRST_FAILURE.isoformat()
    assert letter.traceparent == TRACEPARENT


def test_replay_gets_the_original_headers_back_without_dead_letter_or_broker_headers() -> None:
    headers = dead_letter_headers(delivered(ORIGINAL), consumer="loyalty", failed=failed())
    letter = DeadLetter(sequence=7, subject="dlq.loyalty.orders.created", headers=headers, body=b"{}")

    assert letter.original_headers() == {
        "ce-id": "event-1",
        "ce-type": "orderflow.orders.order_created.v1",
        "traceparent": TRACEPARENT,
    }
    assert (letter.reason, letter.event_id, letter.original_subject) == ("permanent", "event-1", "orders.created")


def test_headers_nats_py_will_not_publish_are_kept_in_one_header_it_will() -> None:
    """nats-py receives `x(y): 1` but refuses to publish that name (BadHeaderError)."""
    refused = {"x(y)": "1", "caf\u00e9?": "cr\u00e8me", "a/b": "2"}
    received = {**ORIGINAL, **refused}

    headers = dead_letter_headers(delivered(received), consumer="loyalty", failed=failed())
    letter = DeadLetter(sequence=7, subject="dlq.loyalty.orders.created", headers=headers, body=b"{}")

    assert all(_HEADER_KEY_RE.fullmatch(name) for name in headers)
    assert headers["ce-id"] == "event-1"
    assert json.loads(headers[UNPUBLISHABLE_HEADERS]) == refused
    assert headers[UNPUBLISHABLE_HEADERS].isascii()
    # A replay carries them along, still publishable.
    assert json.loads(letter.original_headers()[UNPUBLISHABLE_HEADERS]) == refused


def test_a_second_dead_letter_of_a_replayed_message_keeps_both_sets_of_unpublishable_headers() -> None:
    earlier = json.dumps({"x(y)": "1"})

    headers = publishable_headers({"ce-id": "e", UNPUBLISHABLE_HEADERS: earlier, "p(q)": "2", " ": "blank"})
    untouched = publishable_headers({"ce-id": "e", UNPUBLISHABLE_HEADERS: earlier})
    not_ours = publishable_headers({UNPUBLISHABLE_HEADERS: "producer text", "p(q)": "2"})

    assert headers == {"ce-id": "e", UNPUBLISHABLE_HEADERS: '{"x(y)":"1","p(q)":"2"}'}
    assert untouched == {"ce-id": "e", UNPUBLISHABLE_HEADERS: earlier}
    assert json.loads(not_ours[UNPUBLISHABLE_HEADERS]) == {UNPUBLISHABLE_HEADERS: "producer text", "p(q)": "2"}
