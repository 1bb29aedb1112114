"""One settings model for every durable consumer (orderflow_kit.consumer_settings): each service
reads its own from its own variables, the names the services have always read."""

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from inventory.settings import InventorySettings
from loyalty.settings import LoyaltySettings

SERVICES = [
    pytest.param(InventorySettings, "ORDERFLOW_INVENTORY_", "ORDERFLOW_LOYALTY_", id="inventory"),
    pytest.param(LoyaltySettings, "ORDERFLOW_LOYALTY_", "ORDERFLOW_INVENTORY_", id="loyalty"),
]


@pytest.mark.parametrize(("settings", "prefix", "other_prefix"), SERVICES)
def test_each_service_reads_its_consumer_from_its_own_variables(
    monkeypatch: pytest.MonkeyPatch, settings: type[InventorySettings | LoyaltySettings], prefix: str, other_prefix: str
) -> None:
    for name, value in {"CONSUMER": "blue", "DELIVER_POLICY": "new", "MAX_DELIVER": "7", "BATCH_SIZE": "20"}.items():
        monkeypatch.setenv(prefix + name, value)
    monkeypatch.setenv(other_prefix + "MAX_DELIVER", "2")

    consumer = settings().order_events

    assert (consumer.consumer, consumer.deliver_policy, consumer.max_deliver, consumer.batch_size) == (
        "blue",
        "new",
        7,
        20,
    )


@pytest.mark.parametrize(("settings", "prefix", "other_prefix"), SERVICES)
def test_a_service_whose_ack_wait_is_shorter_than_the_handlers_worst_case_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, settings: type[BaseSettings], prefix: str, other_prefix: str
) -> None:
    monkeypatch.setenv(prefix + "ACK_WAIT_SECONDS", "10")
    monkeypatch.setenv(prefix + "HANDLER_TIMEOUT_SECONDS", "5")

    with pytest.raises(ValidationError, match="must exceed the handler's worst case"):
        settings()
