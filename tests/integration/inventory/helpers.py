"""What the inventory integration tests share: test products with fresh SKUs, and reading stock."""

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def add_product(engine: AsyncEngine, stock: int, price_cents: int = 1000) -> str:
    """A product with a fresh SKU, so tests sharing a database never touch each other's stock."""
    sku = f"TEST-{uuid.uuid4().hex[:10].upper()}"
    async with engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO products (sku, name, price_cents, available) VALUES (:sku, :name, :price, :stock)"),
            {"sku": sku, "name": f"Test product {sku}", "price": price_cents, "stock": stock},
        )
    return sku


async def available(engine: AsyncEngine, sku: str) -> int:
    async with engine.connect() as connection:
        stock = await connection.scalar(text("SELECT available FROM products WHERE sku = :sku"), {"sku": sku})
    assert isinstance(stock, int)
    return stock
