import pytest
from pydantic import ValidationError

from loyalty.settings import LoyaltySettings


def test_the_defaults_keep_ack_wait_above_the_handlers_worst_case() -> None:
    settings = LoyaltySettings()

    assert settings.loyalty_ack_wait_seconds > 2 * settings.loyalty_handler_timeout_seconds
    assert settings.loyalty_max_deliver == 5
    assert settings.loyalty_consumer == "loyalty"


def test_an_ack_wait_shorter_than_the_handlers_worst_case_is_refused() -> None:
    with pytest.raises(ValidationError, match="must exceed the handler's worst case"):
        LoyaltySettings(loyalty_ack_wait_seconds=10, loyalty_handler_timeout_seconds=5)
