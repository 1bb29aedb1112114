"""When a message first failed, kept across its redeliveries for its dead letter (orderflow_kit.dead_letters)."""

from datetime import UTC, datetime

from nats.aio.msg import Msg

from orderflow_kit.dead_letters import FirstFailures

STORED_NS = 1_763_700_000_000_000_000  # when the broker stored the message
STORED_AT = datetime.fromtimestamp(STORED_NS / 1e9, UTC)


def delivery(number: int, stream_sequence: int = 42) -> Msg:
    reply = f"$JS.ACK.ORDERS.loyalty.{number}.{stream_sequence}.{number}.{STORED_NS}.0"
    return Msg(_client=None, subject="orders.created", reply=reply, data=b"{}")  # type: ignore[arg-type]


def test_the_first_failure_is_remembered_across_redeliveries() -> None:
    first_failures = FirstFailures()

    first = first_failures.failed(delivery(1))
    later = [first_failures.failed(delivery(number)) for number in (2, 3)]

    assert first > STORED_AT
    assert later == [first, first]


def test_a_message_whose_first_failure_was_seen_elsewhere_falls_back_to_when_it_was_stored() -> None:
    """Another replica (or this process before a restart) saw deliveries 1 and 2."""
    assert FirstFailures().failed(delivery(3)) == STORED_AT


def test_a_forgotten_message_starts_afresh_and_the_memory_is_bounded() -> None:
    first_failures = FirstFailures(capacity=2)
    first_failures.failed(delivery(1, stream_sequence=1))
    first_failures.forget(delivery(1, stream_sequence=1))
    for sequence in (2, 3, 4):
        first_failures.failed(delivery(1, stream_sequence=sequence))

    assert first_failures.failed(delivery(2, stream_sequence=1)) == STORED_AT  # forgotten: falls back
    assert first_failures.failed(delivery(2, stream_sequence=2)) == STORED_AT  # evicted, the oldest
