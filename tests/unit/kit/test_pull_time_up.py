"""FastStream's ERROR for a pull whose time ran out is dropped; every other one still shows."""

import logging

import nats.errors
import pytest

from orderflow_kit.jetstream_consumer import PullTimeUp

RETRYING = "Task-70 raised an exception, retrying...\nIf this behavior causes issues, ..."


def record(message: str, error: BaseException | None) -> logging.LogRecord:
    exc_info = (type(error), error, None) if error is not None else None
    return logging.LogRecord("loyalty.broker", logging.ERROR, __file__, 1, message, None, exc_info)


def test_the_retry_after_asyncios_own_timeout_is_dropped() -> None:
    assert not PullTimeUp().filter(record(RETRYING, TimeoutError()))


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (RETRYING, ConnectionError("lost")),  # another failure of the fetch loop
        (RETRYING, nats.errors.TimeoutError()),  # a subclass: not the case this filter is for
        ("Task-70 raised an exception and won't be restarted.", TimeoutError()),
        ("ack failed", None),
    ],
)
def test_every_other_error_still_shows(message: str, error: BaseException | None) -> None:
    assert PullTimeUp().filter(record(message, error))
