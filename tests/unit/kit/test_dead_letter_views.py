"""How a dead letter is shown, the same to the `orderflow dlq` CLI and the gateway's admin
endpoints (orderflow_kit.dead_letters), and which subjects a consumer's dead letters are on."""

import base64
from datetime import UTC, datetime

import pytest

from orderflow_kit.dead_letters import (
    ALL_DEAD_LETTERS,
    CONSUMER,
    DEAD_LETTERED_AT,
    DELIVERIES,
    ERROR,
    ERROR_CLASS,
    FIRST_FAILURE_AT,
    ORIGINAL_SEQUENCE,
    ORIGINAL_SUBJECT,
    REASON,
    DeadLetter,
    DeadLetterError,
    dead_letter_filter,
    readable_body,
)

HEADERS = {
    "ce-id": "5f0c6f1e-8a51-4a43-9a57-0d4f5c3b2a10",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    REASON: "permanent",
    ERROR: "invalid payload",
    ERROR_CLASS: "ValidationError",
    CONSUMER: "loyalty",
    ORIGINAL_SUBJECT: "orders.created",
    ORIGINAL_SEQUENCE: "41",
    DELIVERIES: "1",
    FIRST_FAILURE_AT: "2026-11-20T10:16:01+00:00",
    DEAD_LETTERED_AT: "2026-11-20T10:16:02+00:00",
}


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        (b'{"order_id": "x"}', {"body": {"order_id": "x"}}),
        (b"[1, 2]", {"body": [1, 2]}),
        (b"not JSON at all", {"body_text": "not JSON at all"}),
        (b"[" * 5000 + b"]" * 5000, {"body_text": "[" * 5000 + "]" * 5000}),  # deeper than json goes
        (b"\xff\xfe\x00", {"body_base64": base64.b64encode(b"\xff\xfe\x00").decode()}),
    ],
)
def test_a_body_is_shown_as_json_else_text_else_base64(body: bytes, shown: dict[str, object]) -> None:
    assert readable_body(body) == shown


def test_a_dead_letter_is_summarised_by_its_headers_and_detailed_with_all_of_them() -> None:
    stored_at = datetime(2026, 11, 20, 10, 16, 2, tzinfo=UTC)
    letter = DeadLetter(8, "dlq.loyalty.orders.created", HEADERS, b"not JSON at all", stored_at)

    assert letter.summary() == {
        "sequence": 8,
        "subject": "dlq.loyalty.orders.created",
        "consumer": "loyalty",
        "original_subject": "orders.created",
        "original_sequence": "41",
        "reason": "permanent",
        "deliveries": "1",
        "ce_id": HEADERS["ce-id"],
        "traceparent": HEADERS["traceparent"],
        "first_failure_at": "2026-11-20T10:16:01+00:00",
        "dead_lettered_at": "2026-11-20T10:16:02+00:00",
        "error_class": "ValidationError",
        "error": "invalid payload",
    }
    assert letter.details() == {
        **letter.summary(),
        "stored_at": "2026-11-20T10:16:02+00:00",
        "headers": HEADERS,
        "body_text": "not JSON at all",
    }


def test_a_consumers_dead_letters_are_on_its_own_subjects() -> None:
    assert dead_letter_filter(None) == ALL_DEAD_LETTERS
    assert dead_letter_filter("loyalty-e2e_1") == "dlq.loyalty-e2e_1.>"


@pytest.mark.parametrize("consumer", ["", "loyalty.orders", "*", ">", "a b", "x" * 129])
def test_a_name_that_would_change_the_filter_is_refused(consumer: str) -> None:
    with pytest.raises(DeadLetterError):
        dead_letter_filter(consumer)
