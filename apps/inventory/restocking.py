"""Stock arrives: a stream of restock lines, applied all or none.

The whole stream is read and checked first, then applied in ONE transaction: no transaction is
held open while a slow client streams, and a refused line (malformed, an unknown SKU, a product
that would overflow) leaves the catalog exactly as it was. What the client must do after a
refusal is then simple: fix the stream and send all of it again.

A restock adds each unit to `available` AND to `received`, so the stock-conservation equation
(stock_conservation: available + reserved + confirmed == received) still holds after it.
It takes three statements: the products new to the catalog are inserted (no reservation can see
them before the commit); the others are locked in SKU order, the order reservations lock them in
(so a restock and a reservation cannot deadlock), and checked; then one UPDATE adds their units.

A line may carry a name and a price: a SKU not in the catalog yet is then added to it. For a SKU
already there they must be the catalog's own (PRODUCT_MISMATCH otherwise): a restock never
changes a product. A restock is not idempotent (a repeat adds the units again): clients must not
retry one blindly, and channels never retry it (orderflow_kit.failures)."""

from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from inventory.database import retried_on_conflict
from inventory.reservations import MAX_NAMED_SKUS
from orderflow_contracts.identifiers import (
    MAX_PRICE_CENTS,
    MAX_PRODUCT_NAME_LENGTH,
    MAX_RESTOCK_LINES,
    MAX_RESTOCK_UNITS,
    SKU_PATTERN,
    is_product_name,
    is_sku,
)
from orderflow_kit.errors import failed_precondition, invalid_argument, not_found

# `available` and `received` are INTEGER columns.
MAX_STOCK = 2**31 - 1


@dataclass(frozen=True)
class RestockLine:
    sku: str
    quantity: int
    # Both or neither: what a SKU new to the catalog is added with.
    name: str | None = None
    price_cents: int | None = None


@dataclass(frozen=True)
class Restocked:
    sku: str
    units_added: int
    available: int
    added_to_catalog: bool


@dataclass(frozen=True)
class RestockSummary:
    messages: int
    # In SKU order.
    products: list[Restocked]


@dataclass
class _Arrival:
    """All the stream's lines for one SKU."""

    units: int
    name: str | None
    price_cents: int | None


# Products new to the catalog, inserted in SKU order; returns those added, with their stock (not
# those that are in the catalog already: those are restocked like the others).
_ADD_PRODUCTS = text(
    """
    INSERT INTO products (sku, name, price_cents, available, received)
    SELECT sku, name, price_cents, units, units
      FROM unnest(CAST(:skus AS varchar[]), CAST(:names AS varchar[]), CAST(:prices AS bigint[]),
                  CAST(:units AS integer[])) AS arrival (sku, name, price_cents, units)
     ORDER BY sku COLLATE "C"
    ON CONFLICT DO NOTHING
    RETURNING sku, available
    """
)

# The catalog's products among the others, locked in SKU order until the commit.
_LOCK_PRODUCTS = text(
    """
    SELECT sku, name, price_cents, received
      FROM products
     WHERE sku = ANY(CAST(:skus AS varchar[]))
     ORDER BY sku COLLATE "C"
       FOR NO KEY UPDATE
    """
)

# Their units, on the shelf and received; returns what each now has on the shelf.
_RECEIVE = text(
    """
    UPDATE products
       SET available = products.available + arrival.units, received = products.received + arrival.units
      FROM unnest(CAST(:skus AS varchar[]), CAST(:units AS integer[])) AS arrival (sku, units)
     WHERE products.sku = arrival.sku
    RETURNING products.sku, products.available
    """
)


async def restock(engine: AsyncEngine, lines: AsyncIterable[RestockLine]) -> RestockSummary:
    """Read every line (VALIDATION_FAILED names the first bad one), then apply them all in one
    transaction, or none: UNKNOWN_SKU, PRODUCT_MISMATCH and STOCK_LIMIT roll everything back."""
    arrivals, messages = await _read(lines)
    skus = sorted(arrivals)
    for sku in skus:
        if arrivals[sku].units > MAX_STOCK:
            raise _too_much(sku)

    async def receive() -> tuple[dict[str, int], dict[str, int]]:
        async with engine.begin() as connection:
            named = {sku: arrivals[sku] for sku in skus if arrivals[sku].name is not None}
            added = await _add_products(connection, named)
            others = [sku for sku in skus if sku not in added]
            catalog = {row.sku: row for row in await connection.execute(_LOCK_PRODUCTS, {"skus": others})}
            _check_catalog(arrivals, others, catalog)
            received = await connection.execute(
                _RECEIVE, {"skus": others, "units": [arrivals[sku].units for sku in others]}
            )
            return added, {**added, **{sku: units for sku, units in received}}

    # The stream was read whole before: a transaction rolled back by a conflict is run again.
    added, available = await retried_on_conflict(receive)
    return RestockSummary(messages, [Restocked(sku, arrivals[sku].units, available[sku], sku in added) for sku in skus])


async def _add_products(connection: AsyncConnection, named: dict[str, _Arrival]) -> dict[str, int]:
    """Insert the named SKUs not in the catalog yet (in SKU order); returns those it added, with
    their stock."""
    if not named:
        return {}
    added = await connection.execute(
        _ADD_PRODUCTS,
        {
            "skus": list(named),
            "names": [arrival.name for arrival in named.values()],
            "prices": [arrival.price_cents for arrival in named.values()],
            "units": [arrival.units for arrival in named.values()],
        },
    )
    return {sku: available for sku, available in added}


def _check_catalog(arrivals: dict[str, _Arrival], skus: list[str], catalog: dict[str, Row[Any]]) -> None:
    """Refuse the restock of these SKUs (in SKU order) if one would overflow (STOCK_LIMIT) or names
    its product otherwise than the catalog (PRODUCT_MISMATCH); else if any is not in the catalog
    (UNKNOWN_SKU)."""
    unknown: list[str] = []
    for sku in skus:
        arrival, product = arrivals[sku], catalog.get(sku)
        if product is None:
            unknown.append(sku)
        elif product.received > MAX_STOCK - arrival.units:
            raise _too_much(sku)
        elif arrival.name is not None and (product.name, product.price_cents) != (arrival.name, arrival.price_cents):
            raise failed_precondition(
                "PRODUCT_MISMATCH",
                f"{sku} is in the catalog as {product.name!r} at {product.price_cents} cents; a restock does not "
                "change a product, so give its own name and price or none; nothing was restocked",
                skus=sku,
            )
    if unknown:
        named = unknown[:MAX_NAMED_SKUS]
        more = f" and {len(unknown) - len(named)} more" if len(unknown) > len(named) else ""
        raise not_found(
            "UNKNOWN_SKU",
            f"unknown SKU(s): {', '.join(named)}{more}; a new product needs a name and a price_cents; "
            "nothing was restocked",
            skus=",".join(named),
        )


async def _read(lines: AsyncIterable[RestockLine]) -> tuple[dict[str, _Arrival], int]:
    """The stream's units per SKU, and how many lines it held; VALIDATION_FAILED on a bad line."""
    arrivals: dict[str, _Arrival] = {}
    messages = 0
    async for line in lines:
        if messages == MAX_RESTOCK_LINES:
            raise invalid_argument(f"lines: a restock holds at most {MAX_RESTOCK_LINES}", field="lines")
        where = f"lines[{messages}]"
        _check(line, where)
        arrival = arrivals.setdefault(line.sku, _Arrival(0, None, None))
        if line.name is not None:
            if arrival.name is not None and (arrival.name, arrival.price_cents) != (line.name, line.price_cents):
                # A conflict with the product as the earlier line names it, as with the catalog's: each
                # line is valid alone, so no request schema could refuse it (issue 9.6).
                raise failed_precondition(
                    "PRODUCT_MISMATCH",
                    f"{where}: an earlier line gave {line.sku} another name or price; a product has one of "
                    "each, so give the same or none; nothing was restocked",
                    skus=line.sku,
                )
            arrival.name, arrival.price_cents = line.name, line.price_cents
        arrival.units += line.quantity
        messages += 1
    if not messages:
        raise invalid_argument("lines: a restock needs at least one", field="lines")
    return arrivals, messages


def _check(line: RestockLine, where: str) -> None:
    if not is_sku(line.sku):
        raise invalid_argument(
            f"{where}.sku {line.sku[:80]!r} is not a SKU (pattern {SKU_PATTERN})", field=f"{where}.sku"
        )
    if not 1 <= line.quantity <= MAX_RESTOCK_UNITS:
        raise invalid_argument(
            f"{where}.quantity must be between 1 and {MAX_RESTOCK_UNITS}, got {line.quantity}",
            field=f"{where}.quantity",
        )
    if (line.name is None) != (line.price_cents is None):
        raise invalid_argument(
            f"{where}.name: name and price_cents come together, or not at all", field=f"{where}.name"
        )
    if line.name is not None and not is_product_name(line.name):
        raise invalid_argument(
            f"{where}.name must be 1 to {MAX_PRODUCT_NAME_LENGTH} printable characters", field=f"{where}.name"
        )
    if line.price_cents is not None and not 0 <= line.price_cents <= MAX_PRICE_CENTS:
        raise invalid_argument(
            f"{where}.price_cents must be between 0 and {MAX_PRICE_CENTS}", field=f"{where}.price_cents"
        )


def _too_much(sku: str) -> Exception:
    return failed_precondition(
        "STOCK_LIMIT", f"{sku} would hold more than {MAX_STOCK} units; nothing was restocked", skus=sku
    )
