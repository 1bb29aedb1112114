"""Loyalty's consumer settings: the shared consumer model (orderflow_kit.consumer_settings), read
from ORDERFLOW_LOYALTY_* variables."""

import pytest
from pydantic import ValidationError

from loyalty.settings import LoyaltyConsumer, LoyaltySettings


def test_the_defaults_keep_ack_wait_above_the_handlers_worst_case() -> None:
    consumer = LoyaltySettings().order_events

    assert consumer.ack_wait_seconds > 2 * consumer.handler_timeout_seconds
    assert consumer.max_deliver == 5
    assert consumer.consumer == "loyalty"


def test_an_ack_wait_shorter_than_the_handlers_worst_case_is_refused() -> None:
    with pytest.raises(ValidationError, match="must exceed the handler's worst case"):
        LoyaltyConsumer(ack_wait_seconds=10, handler_timeout_seconds=5)
