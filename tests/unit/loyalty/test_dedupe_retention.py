"""Loyalty refuses to forget a processed event id while a copy of that event may still arrive."""

import pytest
from pydantic import ValidationError

import loyalty.main
from loyalty.settings import LoyaltySettings
from orderflow_kit.nats import (
    DEAD_LETTERS_MAX_AGE_SECONDS,
    DUPLICATE_WINDOW_SECONDS,
    ORDERS_MAX_AGE_SECONDS,
    REDELIVERY_HORIZON_SECONDS,
)


def test_the_default_retention_outlives_the_redelivery_horizon() -> None:
    settings = LoyaltySettings()

    assert settings.loyalty_dedupe_retention_seconds > REDELIVERY_HORIZON_SECONDS


def test_the_horizon_covers_a_message_in_orders_then_as_a_dead_letter_then_replayed_into_orders() -> None:
    assert REDELIVERY_HORIZON_SECONDS == 2 * ORDERS_MAX_AGE_SECONDS + DEAD_LETTERS_MAX_AGE_SECONDS
    # Broker redeliveries and the duplicate window happen while the message is in ORDERS: inside it.
    consumer = LoyaltySettings().order_events
    redelivering = consumer.max_deliver * (consumer.ack_wait_seconds + consumer.retry_max_seconds)
    assert DUPLICATE_WINDOW_SECONDS + redelivering < ORDERS_MAX_AGE_SECONDS


@pytest.mark.parametrize("retention", [REDELIVERY_HORIZON_SECONDS, ORDERS_MAX_AGE_SECONDS, 3600.0])
def test_a_retention_not_longer_than_the_horizon_is_refused(retention: float) -> None:
    with pytest.raises(ValidationError, match="must exceed the redelivery horizon"):
        LoyaltySettings(loyalty_dedupe_retention_seconds=retention)


def test_a_too_short_retention_in_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERFLOW_LOYALTY_DEDUPE_RETENTION_SECONDS", str(ORDERS_MAX_AGE_SECONDS))

    with pytest.raises(ValidationError, match="loyalty_dedupe_retention_seconds"):
        LoyaltySettings()


async def test_loyalty_refuses_to_start_with_a_too_short_retention(monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m loyalty` runs `main()`: it reads its settings before it touches any server."""
    monkeypatch.setenv("ORDERFLOW_LOYALTY_DEDUPE_RETENTION_SECONDS", "86400")

    with pytest.raises(ValidationError, match="must exceed the redelivery horizon"):
        await loyalty.main.main()
