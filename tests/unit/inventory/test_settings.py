from pathlib import Path

import pytest
from pydantic import ValidationError

from inventory.settings import DEMO_CATALOG, InventorySettings


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
