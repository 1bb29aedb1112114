"""Stock arrives: a stream of restock lines, applied all or none.

The whole stream is read and checked first, then applied in ONE transaction: no transaction is
held open while a slow client streams, and a refused line (malformed, an unknown SKU, a product
that would overflow) leaves the catalog exactly as it was. What the client must do after a
refusal is then simple: fix the stream and send all of it again.

A restock adds each unit to `available` AND to `received`, so the stock-conservation equation
(stock_conservation: available + reserved + confirmed == received) still holds after it.
Products are updated one row at a time in SKU order, the order reservations lock them in, so a
restock and a reservation cannot deadlock.

A line may carry a name and a price: a SKU not in the catalog yet is then added to it. For a SKU
already there they must be the catalog's own (PRODUCT_MISMATCH otherwise): a restock never
changes a product. A restock is not idempotent (a repeat adds the units again): clients must not
retry one blindly, and channels never retry it (orderflow_kit.failures)."""

from collections.abc import AsyncIterable
from dataclasses import dataclass

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from inventory.models import Product
from inventory.reservations import MAX_NAMED_SKUS
from orderflow_contracts.identifiers import (
    MAX_CENTS,
    MAX_PRODUCT_NAME_LENGTH,
    MAX_RESTOCK_LINES,
    MAX_RESTOCK_UNITS,
    SKU_PATTERN,
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


async def restock(engine: AsyncEngine, lines: AsyncIterable[RestockLine]) -> RestockSummary:
    """Read every line (VALIDATION_FAILED names the first bad one), then apply them all in one
    transaction, or none: UNKNOWN_SKU, PRODUCT_MISMATCH and STOCK_LIMIT roll everything back."""
    arrivals, messages = await _read(lines)
    restocked: list[Restocked] = []
    unknown: list[str] = []
    async with AsyncSession(engine) as session, session.begin():
        for sku in sorted(arrivals):
            product = await _receive(session, sku, arrivals[sku])
            if product is None:
                unknown.append(sku)
            else:
                restocked.append(product)
        if unknown:
            named = unknown[:MAX_NAMED_SKUS]
            more = f" and {len(unknown) - len(named)} more" if len(unknown) > len(named) else ""
            raise not_found(
                "UNKNOWN_SKU",
                f"unknown SKU(s): {', '.join(named)}{more}; a new product needs a name and a price_cents; "
                "nothing was restocked",
                skus=",".join(named),
            )
    return RestockSummary(messages, restocked)


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
                raise invalid_argument(
                    f"{where}.name: an earlier line gave {line.sku} another name or price", field=f"{where}.name"
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
    if line.name is not None and not (0 < len(line.name) <= MAX_PRODUCT_NAME_LENGTH and line.name.isprintable()):
        raise invalid_argument(
            f"{where}.name must be 1 to {MAX_PRODUCT_NAME_LENGTH} printable characters", field=f"{where}.name"
        )
    if line.price_cents is not None and not 0 <= line.price_cents <= MAX_CENTS:
        raise invalid_argument(f"{where}.price_cents must not be negative", field=f"{where}.price_cents")


async def _receive(session: AsyncSession, sku: str, arrival: _Arrival) -> Restocked | None:
    """Add the units to one product (creating it if the arrival says how); None for an unknown SKU."""
    if arrival.units > MAX_STOCK:
        raise _too_much(sku)
    if arrival.name is not None:
        added = await session.exec(
            insert(Product)
            .values(
                sku=sku,
                name=arrival.name,
                price_cents=arrival.price_cents,
                available=arrival.units,
                received=arrival.units,
            )
            .on_conflict_do_nothing()
            .returning(col(Product.sku))
        )
        if added.first() is not None:
            return Restocked(sku, arrival.units, arrival.units, added_to_catalog=True)
    received = await session.exec(
        update(Product)
        .where(col(Product.sku) == sku, col(Product.received) <= MAX_STOCK - arrival.units)
        .values(available=col(Product.available) + arrival.units, received=col(Product.received) + arrival.units)
        .returning(col(Product.available), col(Product.name), col(Product.price_cents))
    )
    row = received.first()
    if row is None:
        exists = (await session.exec(select(Product.sku).where(col(Product.sku) == sku))).first()
        if exists is None:
            return None
        raise _too_much(sku)
    available, name, price_cents = row
    if arrival.name is not None and (name, price_cents) != (arrival.name, arrival.price_cents):
        raise failed_precondition(
            "PRODUCT_MISMATCH",
            f"{sku} is in the catalog as {name!r} at {price_cents} cents; a restock does not change a product, "
            "so give its own name and price or none; nothing was restocked",
            skus=sku,
        )
    return Restocked(sku, arrival.units, available, added_to_catalog=False)


def _too_much(sku: str) -> Exception:
    return failed_precondition(
        "STOCK_LIMIT", f"{sku} would hold more than {MAX_STOCK} units; nothing was restocked", skus=sku
    )
