"""The product catalog: seeding it from a JSON file on first start, and reading it."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
from pydantic import BaseModel, ConfigDict, Field, StrictInt, TypeAdapter, ValidationError
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.models import Product
from orderflow_contracts.identifiers import SKU_PATTERN, is_sku
from orderflow_kit.db import autocommit
from orderflow_kit.errors import invalid_argument, not_found

log = structlog.get_logger()


class CatalogEntry(BaseModel):
    """One product of a catalog file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: str = Field(pattern=SKU_PATTERN)
    name: str = Field(min_length=1)
    price_cents: StrictInt = Field(ge=0)
    stock: StrictInt = Field(ge=0)


_catalog_file = TypeAdapter(list[CatalogEntry])


class CatalogError(Exception):
    """A catalog file that cannot be loaded; the message names the file and the problem."""


def read_catalog(path: Path) -> list[CatalogEntry]:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise CatalogError(f"catalog file {path} cannot be read: {error.strerror}") from None
    try:
        entries = _catalog_file.validate_json(raw)
    except ValidationError as error:
        problems = "; ".join(_describe(problem["loc"], problem["msg"]) for problem in error.errors())
        raise CatalogError(f"catalog file {path} is invalid: {problems}") from None
    skus = [entry.sku for entry in entries]
    duplicates = sorted({sku for sku in skus if skus.count(sku) > 1})
    if duplicates:
        raise CatalogError(f"catalog file {path} is invalid: SKU listed more than once: {', '.join(duplicates)}")
    return entries


def _describe(location: Sequence[int | str], message: str) -> str:
    """`[2].price_cents: Input should be ...` for the third entry's price."""
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location).lstrip(".")
    return f"{where}: {message}" if where else message


@dataclass(frozen=True)
class CatalogProduct:
    """A product as the catalog shows it: on sale at this price, with this much on the shelf."""

    sku: str
    name: str
    price_cents: int
    available: int


_ANY_PRODUCT = text("SELECT 1 FROM products LIMIT 1")
_PRODUCTS = text("SELECT sku, name, price_cents, available FROM products ORDER BY sku")
_PRODUCT = text("SELECT sku, name, price_cents, available FROM products WHERE sku = :sku")


async def load_catalog_if_empty(engine: AsyncEngine, path: Path) -> int:
    """Seed an empty products table from `path`; returns how many products were added.

    Only the first start loads the file, so restarts never reset stock. Two replicas starting at
    once may both see the table empty: ON CONFLICT DO NOTHING lets the second insert add nothing."""
    async with engine.begin() as connection:
        if await connection.scalar(_ANY_PRODUCT) is not None:
            return 0
        entries = read_catalog(path)
        rows = [
            {
                "sku": entry.sku,
                "name": entry.name,
                "price_cents": entry.price_cents,
                "available": entry.stock,
                "received": entry.stock,
            }
            for entry in entries
        ]
        added = 0
        if rows:
            added = (await connection.execute(insert(Product).values(rows).on_conflict_do_nothing())).rowcount
    log.info("catalog loaded", path=str(path), products=added)
    return added


async def list_products(engine: AsyncEngine) -> list[CatalogProduct]:
    async with autocommit(engine) as connection:
        return [CatalogProduct(*row) for row in await connection.execute(_PRODUCTS)]


async def get_product(engine: AsyncEngine, sku: str) -> CatalogProduct:
    if not is_sku(sku):
        raise invalid_argument(f"sku {sku[:80]!r} is not a SKU (pattern {SKU_PATTERN})", field="sku")
    async with autocommit(engine) as connection:
        product = (await connection.execute(_PRODUCT, {"sku": sku})).first()
    if product is None:
        raise not_found("UNKNOWN_SKU", f"unknown SKU {sku}", skus=sku)
    return CatalogProduct(*product)
