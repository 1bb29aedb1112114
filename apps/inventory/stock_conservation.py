"""Stock is conserved: for every product, available + reserved + confirmed == received.

`received` is every unit the product ever got (the catalog's stock, plus later restocks); each
unit is then in exactly one place: on the shelf (`available`), held for an order that may not
exist yet (lines of RESERVED reservations), or sold (lines of CONFIRMED ones). Released and
expired reservations hold nothing: their stock went back to `available`. Every transition in
`reservations` moves units between those places in one transaction, so the equation holds after
every commit; `count_stock` checks it from the tables themselves (the chaos suite runs it at the
end of every case)."""

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# One statement, so one snapshot: counts from concurrent commits never mix.
_COUNTS = text(
    """
    SELECT products.sku, products.received, products.available,
           coalesce(sum(lines.quantity) FILTER (WHERE reservations.status = 'RESERVED'), 0) AS reserved,
           coalesce(sum(lines.quantity) FILTER (WHERE reservations.status = 'CONFIRMED'), 0) AS confirmed
      FROM products
      LEFT JOIN reservation_lines AS lines ON lines.sku = products.sku
      LEFT JOIN reservations ON reservations.order_id = lines.order_id
     GROUP BY products.sku
     ORDER BY products.sku
    """
)


@dataclass(frozen=True)
class StockCount:
    sku: str
    received: int
    available: int
    reserved: int
    confirmed: int

    @property
    def conserved(self) -> bool:
        return self.available + self.reserved + self.confirmed == self.received


async def count_stock(engine: AsyncEngine) -> list[StockCount]:
    """Every product's counts, by SKU."""
    async with engine.connect() as connection:
        rows = (await connection.execute(_COUNTS)).all()
    return [StockCount(row.sku, row.received, row.available, int(row.reserved), int(row.confirmed)) for row in rows]


async def unconserved_stock(engine: AsyncEngine) -> list[StockCount]:
    """The products whose counts break the equation: empty when stock is conserved."""
    return [count for count in await count_stock(engine) if not count.conserved]
