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


def test_the_consumer_is_set_by_orderflow_loyalty_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERFLOW_LOYALTY_CONSUMER", "loyalty-blue")
    monkeypatch.setenv("ORDERFLOW_LOYALTY_MAX_DELIVER", "7")
    monkeypatch.setenv("ORDERFLOW_LOYALTY_BATCH_SIZE", "20")
    monkeypatch.setenv("ORDERFLOW_INVENTORY_MAX_DELIVER", "2")  # inventory's, not loyalty's

    consumer = LoyaltySettings().order_events

    assert (consumer.consumer, consumer.max_deliver, consumer.batch_size) == ("loyalty-blue", 7, 20)


def test_a_service_with_an_ack_wait_shorter_than_the_handlers_worst_case_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERFLOW_LOYALTY_ACK_WAIT_SECONDS", "10")
    monkeypatch.setenv("ORDERFLOW_LOYALTY_HANDLER_TIMEOUT_SECONDS", "5")

    with pytest.raises(ValidationError, match="must exceed the handler's worst case"):
        LoyaltySettings()
