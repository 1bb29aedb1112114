"""What the inventory integration tests share: test products with fresh SKUs, reading stock and
reservations, and OrderCreated events for the consumer that confirms reservations."""

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.stock_conservation import StockCount, count_stock
from tests.support.databases import scalar


async def add_product(engine: AsyncEngine, stock: int, price_cents: int = 1000) -> str:
    """A product with a fresh SKU, so tests sharing a database never touch each other's stock."""
    sku = f"TEST-{uuid.uuid4().hex[:10].upper()}"
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO products (sku, name, price_cents, available, received)"
                " VALUES (:sku, :name, :price, :stock, :stock)"
            ),
            {"sku": sku, "name": f"Test product {sku}", "price": price_cents, "stock": stock},
        )
    return sku


async def available(engine: AsyncEngine, sku: str) -> int:
    stock = await scalar(engine, "SELECT available FROM products WHERE sku = :sku", sku=sku)
    assert isinstance(stock, int)
    return stock


async def reservation_status(engine: AsyncEngine, order_id: uuid.UUID) -> str | None:
    status = await scalar(engine, "SELECT status FROM reservations WHERE order_id = :order_id", order_id=order_id)
    assert status is None or isinstance(status, str)
    return status


async def held_since_an_hour(engine: AsyncEngine, *order_ids: uuid.UUID) -> None:
    """Age reservations past any test TTL, instead of waiting for it."""
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE reservations SET created_at = now() - interval '1 hour' WHERE order_id = ANY(:ids)"),
            {"ids": list(order_ids)},
        )


async def restock(engine: AsyncEngine, sku: str, quantity: int) -> None:
    """What an operator does when stock arrives: on the shelf, and counted as received."""
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE products SET available = available + :q, received = received + :q WHERE sku = :sku"),
            {"q": quantity, "sku": sku},
        )


async def stock_of(engine: AsyncEngine, *skus: str) -> dict[str, StockCount]:
    """The stock counts of the test's own products (the module's database holds others too)."""
    return {count.sku: count for count in await count_stock(engine) if count.sku in skus}
