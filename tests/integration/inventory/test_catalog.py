"""Seeding the catalog on first start, and reading it through the API."""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.catalog import CatalogError, list_products, load_catalog_if_empty, read_catalog
from inventory.settings import DEMO_CATALOG, InventorySettings
from orderflow_contracts.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from orderflow_devstack.infra import Infrastructure, free_port
from orderflow_kit.db import create_engine
from orderflow_kit.grpc_client import channel
from tests.support.services import serving_inventory

SHOP = [
    {"sku": "CUP-1", "name": "Espresso Cup", "price_cents": 650, "stock": 12},
    {"sku": "SAUCER-1", "name": "Saucer", "price_cents": 350, "stock": 30},
]


def write_catalog(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(entries))
    return path


@pytest.fixture
def shop_catalog(tmp_path: Path) -> Path:
    return write_catalog(tmp_path / "shop.json", SHOP)


@pytest.fixture
async def empty_engine(infra: Infrastructure, empty_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(infra.postgres_url, empty_database)
    yield engine
    await engine.dispose()


async def stock_by_sku(engine: AsyncEngine) -> dict[str, int]:
    return {product.sku: product.available for product in await list_products(engine)}


async def test_first_start_loads_the_catalog_file(empty_engine: AsyncEngine, shop_catalog: Path) -> None:
    added = await load_catalog_if_empty(empty_engine, shop_catalog)

    assert added == 2
    assert await stock_by_sku(empty_engine) == {"CUP-1": 12, "SAUCER-1": 30}


async def test_a_restart_keeps_the_stock_it_finds(empty_engine: AsyncEngine, shop_catalog: Path) -> None:
    await load_catalog_if_empty(empty_engine, shop_catalog)
    write_catalog(shop_catalog, [{**entry, "stock": 999} for entry in SHOP])

    added = await load_catalog_if_empty(empty_engine, shop_catalog)

    assert added == 0
    assert await stock_by_sku(empty_engine) == {"CUP-1": 12, "SAUCER-1": 30}


async def test_two_replicas_starting_at_once_load_the_catalog_once(
    infra: Infrastructure, empty_database: str, empty_engine: AsyncEngine
) -> None:
    other_replica = create_engine(infra.postgres_url, empty_database)
    try:
        added = await asyncio.gather(
            load_catalog_if_empty(empty_engine, DEMO_CATALOG), load_catalog_if_empty(other_replica, DEMO_CATALOG)
        )
    finally:
        await other_replica.dispose()

    demo = read_catalog(DEMO_CATALOG)
    assert sum(added) == len(demo)
    assert await stock_by_sku(empty_engine) == {entry.sku: entry.stock for entry in demo}


async def test_an_invalid_catalog_file_stops_the_start_naming_the_file(
    empty_engine: AsyncEngine, tmp_path: Path
) -> None:
    broken = write_catalog(
        tmp_path / "broken.json", [{"sku": "CUP-1", "name": "Cup", "price_cents": "cheap", "stock": 1}]
    )

    with pytest.raises(CatalogError, match=r"broken\.json is invalid: \[0\]\.price_cents"):
        await load_catalog_if_empty(empty_engine, broken)

    assert await list_products(empty_engine) == []


async def test_orderflow_catalog_and_currency_select_what_the_service_serves(
    infra: Infrastructure,
    empty_database: str,
    shop_catalog: Path,
    settings: InventorySettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`settings` only lends its consumer name (removed at the end): the service reads the environment."""
    monkeypatch.setenv("ORDERFLOW_CATALOG", str(shop_catalog))
    monkeypatch.setenv("ORDERFLOW_CURRENCY", "CHF")
    monkeypatch.setenv("ORDERFLOW_POSTGRES_URL", infra.postgres_url)
    monkeypatch.setenv("ORDERFLOW_INVENTORY_DATABASE", empty_database)
    monkeypatch.setenv("ORDERFLOW_INVENTORY_PORT", str(free_port()))
    monkeypatch.setenv("ORDERFLOW_NATS_URL", infra.nats_url)
    monkeypatch.setenv("ORDERFLOW_INVENTORY_CONSUMER", settings.order_events.consumer)
    monkeypatch.setenv("ORDERFLOW_INVENTORY_DELIVER_POLICY", "new")

    async with serving_inventory(InventorySettings()) as address, channel(address) as connection:
        listed = await inventory_pb2_grpc.InventoryServiceStub(connection).ListProducts(
            inventory_pb2.ListProductsRequest()
        )

    assert [(product.sku, product.name, product.price_cents, product.currency) for product in listed.products] == [
        ("CUP-1", "Espresso Cup", 650, "CHF"),
        ("SAUCER-1", "Saucer", 350, "CHF"),
    ]


async def test_the_demo_catalog_is_served_by_default(inventory: Any) -> None:
    listed = await inventory.ListProducts(inventory_pb2.ListProductsRequest())
    product = await inventory.GetProduct(inventory_pb2.GetProductRequest(sku="MUG-001"))

    demo = {entry.sku: entry for entry in read_catalog(DEMO_CATALOG)}
    assert set(demo) <= {listed_product.sku for listed_product in listed.products}
    assert (product.name, product.price_cents, product.currency) == (demo["MUG-001"].name, 1290, "EUR")
    assert product.available == demo["MUG-001"].stock
