"""Inventory's settings beyond the shared ones: which catalog to load and the shop's currency."""

from pathlib import Path

from pydantic import Field

from orderflow_kit.settings import Settings

DEMO_CATALOG = Path(__file__).with_name("demo_catalog.json")


class InventorySettings(Settings):
    # ORDERFLOW_CATALOG: the JSON file loaded into an empty products table on first start.
    catalog: Path = DEMO_CATALOG
    # ORDERFLOW_CURRENCY: one currency for the whole catalog; prices are integer cents of it.
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
