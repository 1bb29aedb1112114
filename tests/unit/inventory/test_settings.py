from pathlib import Path

import pytest
from pydantic import ValidationError

from inventory.settings import DEMO_CATALOG, InventoryConsumer, InventorySettings


def test_defaults_are_the_demo_catalog_in_euro(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERFLOW_CATALOG", raising=False)
    monkeypatch.delenv("ORDERFLOW_CURRENCY", raising=False)
    monkeypatch.delenv("ORDERFLOW_INVENTORY_PORT", raising=False)

    settings = InventorySettings()

    assert settings.catalog == DEMO_CATALOG
    assert settings.currency == "EUR"
    assert settings.inventory_port == 50051


def test_environment_selects_catalog_and_currency(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORDERFLOW_CATALOG", str(tmp_path / "shop.json"))
    monkeypatch.setenv("ORDERFLOW_CURRENCY", "CHF")

    settings = InventorySettings()

    assert settings.catalog == tmp_path / "shop.json"
    assert settings.currency == "CHF"


def test_a_currency_that_is_not_an_iso_code_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERFLOW_CURRENCY", "euro")

    with pytest.raises(ValidationError, match="currency"):
        InventorySettings()


def test_reservations_expire_after_a_few_minutes_unless_the_environment_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ORDERFLOW_RESERVATION_TTL_SECONDS", raising=False)
    assert InventorySettings().reservation_ttl_seconds == 300

    monkeypatch.setenv("ORDERFLOW_RESERVATION_TTL_SECONDS", "1.5")
    assert InventorySettings().reservation_ttl_seconds == 1.5


def test_the_order_events_consumer_is_inventory_on_orders_created(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERFLOW_INVENTORY_CONSUMER", raising=False)
    monkeypatch.delenv("ORDERFLOW_INVENTORY_DELIVER_POLICY", raising=False)

    consumer = InventorySettings().order_events

    assert (consumer.consumer, consumer.stream, consumer.subject, consumer.deliver_policy) == (
        "inventory",
        "ORDERS",
        "orders.created",
        "all",
    )


def test_an_ack_wait_shorter_than_the_handlers_worst_case_is_refused() -> None:
    with pytest.raises(ValidationError, match="must exceed the handler's worst case"):
        InventoryConsumer(ack_wait_seconds=10, handler_timeout_seconds=5)
