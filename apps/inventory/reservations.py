"""What happens to an order in inventory: its stock is reserved (all lines or none), then the
reservation is confirmed (the order exists), released (the order was abandoned) or expired (no
order came within the TTL). Every step is idempotent per order id, so callers may retry freely.

    RESERVED --OrderCreated consumed--> CONFIRMED      stock sold for good
    RESERVED --ReleaseStock-----------> RELEASED       stock given back
    RESERVED --older than the TTL-----> EXPIRED        stock given back by the sweeper
    RELEASED | EXPIRED --late OrderCreated--> CONFIRMED, if the stock can be taken again

Stock is conserved at every step: available + reserved + confirmed == received for every product
(stock_conservation). Each transition moves units between those counts in one transaction.

How it stays correct under any concurrency:
- Stock is taken by a conditional UPDATE (`... WHERE available >= quantity`), never by reading
  and writing back, so two orders can never both take the last unit. Lines are taken in SKU
  order, so two reservations lock the same rows in the same order and cannot deadlock.
- Every line is taken in ONE transaction: when any line falls short, nothing is taken.
- The order's reservation row is inserted first (ON CONFLICT DO NOTHING). Its primary key makes
  a second request for the same order wait until the first one commits or rolls back, and then
  either answer from what was stored or go ahead; it never takes stock a second time.
- Every transition out of RESERVED is a conditional UPDATE (`... WHERE status = 'RESERVED'`) or
  works on a row locked first, so a confirmation, a release and any number of sweepers racing
  for one reservation change it once: exactly one of them gives the stock back, or none.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import structlog
from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from inventory.models import Product, Reservation, ReservationLine, ReservationStatus
from orderflow_contracts.identifiers import MAX_ORDER_LINES, MAX_QUANTITY, SKU_PATTERN, is_order_id, is_sku
from orderflow_kit.errors import ServiceError, already_exists, failed_precondition, invalid_argument, not_found
from orderflow_kit.failures import PermanentFailure

log = structlog.get_logger()

# The most SKUs one refusal names (see _why_not_taken).
MAX_NAMED_SKUS = 10


@dataclass(frozen=True)
class StockLine:
    """One line of a reservation request."""

    sku: str
    quantity: int


async def reserve_stock(engine: AsyncEngine, order_id: str, items: Sequence[StockLine]) -> list[ReservationLine]:
    """Reserve every line of an order or none, and return the reserved lines (in SKU order) with
    the unit price the order is charged.

    A repeat with the same lines returns the stored reservation and takes nothing. Raises
    VALIDATION_FAILED, UNKNOWN_SKU, OUT_OF_STOCK, RESERVATION_CONFLICT (same order, other
    lines), RESERVATION_RELEASED (the order was released, perhaps before this call arrived) or
    RESERVATION_EXPIRED."""
    structlog.contextvars.bind_contextvars(order_id=order_id)
    order = _parse_order_id(order_id)
    lines = _validated_lines(items)
    async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
        if not await _claim_order(session, order, ReservationStatus.RESERVED):
            return await _stored_reservation(session, order, lines)
        prices = await _take_stock(session, lines)
        reserved = [
            ReservationLine(order_id=order, sku=line.sku, quantity=line.quantity, unit_price_cents=prices[line.sku])
            for line in lines
        ]
        session.add_all(reserved)
    return reserved


async def release_stock(engine: AsyncEngine, order_id: str) -> bool:
    """Give an order's reserved stock back, once; False when there was nothing (left) to release
    (released before, or expired).

    Releasing an order that was never reserved leaves a RELEASED tombstone: a ReserveStock for it
    that arrives late (it timed out at the caller, who then released) fails instead of taking
    stock that nobody would ever release. A CONFIRMED reservation is refused
    (RESERVATION_CONFIRMED): its order exists, so its stock is sold and stays taken."""
    structlog.contextvars.bind_contextvars(order_id=order_id)
    order = _parse_order_id(order_id)
    async with AsyncSession(engine) as session, session.begin():
        if await _claim_order(session, order, ReservationStatus.RELEASED):
            return False
        released = await session.exec(
            update(Reservation)
            .where(col(Reservation.order_id) == order, col(Reservation.status) == ReservationStatus.RESERVED)
            .values(status=ReservationStatus.RELEASED)
            .returning(col(Reservation.order_id))
        )
        if released.first() is None:
            status = await _status(session, order)
            if status == ReservationStatus.CONFIRMED:
                raise failed_precondition(
                    "RESERVATION_CONFIRMED",
                    f"order {order} is confirmed (the order exists): its stock cannot be released",
                    order_id=str(order),
                )
            return False
        await _give_back(session, [order])
    return True


class Confirmation(StrEnum):
    """What confirming a reservation did (the consumer logs it as the event's outcome)."""

    CONFIRMED = "confirmed"
    ALREADY_CONFIRMED = "duplicate"
    # The reservation had expired or been released, and its stock was taken again.
    CONFIRMED_LATE = "confirmed-late"


class NoReservation(PermanentFailure):
    """An OrderCreated for an order that reserved nothing here: not ours, or a bug upstream."""


class StockGone(PermanentFailure):
    """The order exists, but its reservation expired (or was released) and the stock it held has
    been sold since: an operator restocks, then replays the dead-lettered event."""


async def confirm_reservation(engine: AsyncEngine, order: uuid.UUID) -> Confirmation:
    """The order exists (its OrderCreated arrived): its stock is sold for good. Idempotent:
    confirming again changes nothing.

    A late event, for a reservation that expired or was released meanwhile (the order's event
    took longer than the TTL, or orders could not tell whether its commit succeeded), takes the
    same lines again if the stock is there (all or none, like a reservation). If it is not,
    StockGone: stock is never taken below zero, and the order is left for an operator."""
    async with AsyncSession(engine) as session, session.begin():
        # Locked until the commit: a sweeper skips it, a release waits for it.
        status = (
            await session.exec(select(Reservation.status).where(col(Reservation.order_id) == order).with_for_update())
        ).one_or_none()
        if status is None:
            raise NoReservation(f"order {order} has no reservation in inventory")
        if status == ReservationStatus.CONFIRMED:
            return Confirmation.ALREADY_CONFIRMED
        if status == ReservationStatus.RESERVED:
            await _set_status(session, order, ReservationStatus.CONFIRMED)
            return Confirmation.CONFIRMED
        lines = await _reserved_lines(session, order)
        if not lines:
            raise NoReservation(f"order {order} was released before it reserved anything")
        try:
            await _take_stock(session, [StockLine(line.sku, line.quantity) for line in lines])
        except ServiceError as refusal:
            log.error("order without stock", order_id=str(order), reservation=status.lower(), error=refusal.detail)
            raise StockGone(
                f"order {order} exists but its reservation was {status.lower()} and its stock is gone: {refusal.detail}"
            ) from refusal
        await _set_status(session, order, ReservationStatus.CONFIRMED)
    log.warning("reservation confirmed late; stock taken again", order_id=str(order), reservation=status.lower())
    return Confirmation.CONFIRMED_LATE


async def expire_reservations(engine: AsyncEngine, *, ttl: timedelta, limit: int) -> list[uuid.UUID]:
    """Give back the stock of at most `limit` reservations held longer than `ttl` and never
    confirmed, oldest first; returns their order ids.

    Safe with any number of sweepers at once: each locks the rows it takes and skips those locked
    by another (SKIP LOCKED), and the status check makes a second expiry of a row impossible."""
    stale = (
        select(Reservation.order_id)
        .where(
            col(Reservation.status) == ReservationStatus.RESERVED,
            col(Reservation.created_at) < func.now() - ttl,
        )
        .order_by(col(Reservation.created_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    async with AsyncSession(engine) as session, session.begin():
        expired = await session.exec(
            update(Reservation)
            .where(col(Reservation.order_id).in_(stale), col(Reservation.status) == ReservationStatus.RESERVED)
            .values(status=ReservationStatus.EXPIRED)
            .returning(col(Reservation.order_id))
        )
        orders = list(expired.scalars().all())
        await _give_back(session, orders)
    return orders


def _parse_order_id(order_id: str) -> uuid.UUID:
    if not is_order_id(order_id):
        raise invalid_argument(
            f"order_id must be a UUID in canonical lower-case form, got {order_id[:80]!r}", field="order_id"
        )
    return uuid.UUID(order_id)


def _validated_lines(items: Sequence[StockLine]) -> list[StockLine]:
    """The request's lines in SKU order (the order their rows are locked in), or VALIDATION_FAILED."""
    if not items:
        raise invalid_argument("items must hold at least one line", field="items")
    if len(items) > MAX_ORDER_LINES:
        raise invalid_argument(f"items holds {len(items)} lines, at most {MAX_ORDER_LINES} are allowed", field="items")
    seen: set[str] = set()
    for index, line in enumerate(items):
        if not is_sku(line.sku):
            raise invalid_argument(
                f"items[{index}].sku {line.sku[:80]!r} is not a SKU (pattern {SKU_PATTERN})",
                field=f"items[{index}].sku",
            )
        if not 1 <= line.quantity <= MAX_QUANTITY:
            raise invalid_argument(
                f"items[{index}].quantity must be between 1 and {MAX_QUANTITY}, got {line.quantity}",
                field=f"items[{index}].quantity",
            )
        if line.sku in seen:
            raise invalid_argument(
                f"items[{index}].sku {line.sku} is listed twice; put its whole quantity on one line",
                field=f"items[{index}].sku",
            )
        seen.add(line.sku)
    return sorted(items, key=lambda line: line.sku)


async def _claim_order(session: AsyncSession, order: uuid.UUID, status: ReservationStatus) -> bool:
    """Insert the order's reservation row; False when the order has one already.

    If another transaction is inserting the same order right now, this waits until it ends."""
    claimed = await session.exec(
        insert(Reservation)
        .values(order_id=order, status=status)
        .on_conflict_do_nothing()
        .returning(col(Reservation.order_id))
    )
    return claimed.first() is not None


async def _stored_reservation(session: AsyncSession, order: uuid.UUID, lines: list[StockLine]) -> list[ReservationLine]:
    """The answer to a repeated request: the stored lines, if the request asks for the same ones."""
    status = await _status(session, order)
    if status == ReservationStatus.RELEASED:
        raise failed_precondition(
            "RESERVATION_RELEASED", f"order {order} was released and cannot reserve stock again", order_id=str(order)
        )
    if status == ReservationStatus.EXPIRED:
        raise failed_precondition(
            "RESERVATION_EXPIRED", f"order {order} expired and cannot reserve stock again", order_id=str(order)
        )
    stored = await _reserved_lines(session, order)
    if [(line.sku, line.quantity) for line in stored] != [(line.sku, line.quantity) for line in lines]:
        raise already_exists(
            "RESERVATION_CONFLICT", f"order {order} already reserved different lines", order_id=str(order)
        )
    return stored


async def _status(session: AsyncSession, order: uuid.UUID) -> ReservationStatus:
    return ReservationStatus(
        (await session.exec(select(Reservation.status).where(col(Reservation.order_id) == order))).one()
    )


async def _set_status(session: AsyncSession, order: uuid.UUID, status: ReservationStatus) -> None:
    await session.exec(update(Reservation).where(col(Reservation.order_id) == order).values(status=status))


async def _give_back(session: AsyncSession, orders: Sequence[uuid.UUID]) -> None:
    """Return the stock the reservations of `orders` hold: one UPDATE per SKU, in SKU order (the
    order reserve_stock locks products in, so the two cannot deadlock)."""
    if not orders:
        return
    held = await session.exec(
        select(ReservationLine.sku, func.sum(ReservationLine.quantity))
        .where(col(ReservationLine.order_id).in_(orders))
        .group_by(col(ReservationLine.sku))
        .order_by(col(ReservationLine.sku))
    )
    for sku, quantity in held.all():
        await session.exec(
            update(Product).where(col(Product.sku) == sku).values(available=col(Product.available) + quantity)
        )


async def _reserved_lines(session: AsyncSession, order: uuid.UUID) -> list[ReservationLine]:
    statement = select(ReservationLine).where(col(ReservationLine.order_id) == order).order_by(col(ReservationLine.sku))
    return list((await session.exec(statement)).all())


async def _take_stock(session: AsyncSession, lines: list[StockLine]) -> dict[str, int]:
    """Take each line's quantity (in SKU order) and return the unit prices by SKU.

    Raises UNKNOWN_SKU or OUT_OF_STOCK naming every line that could not be taken; the caller's
    transaction then rolls back whatever the other lines took."""
    prices: dict[str, int] = {}
    for line in lines:
        taken = await session.exec(
            update(Product)
            .where(col(Product.sku) == line.sku, col(Product.available) >= line.quantity)
            .values(available=col(Product.available) - line.quantity)
            .returning(col(Product.price_cents))
        )
        price = taken.scalar_one_or_none()
        if price is not None:
            prices[line.sku] = price
    missing = [line for line in lines if line.sku not in prices]
    if missing:
        raise await _why_not_taken(session, missing)
    return prices


async def _why_not_taken(session: AsyncSession, missing: list[StockLine]) -> ServiceError:
    """Names at most MAX_NAMED_SKUS of them: a refusal must fit in gRPC's trailing metadata (8 KB),
    and MAX_ORDER_LINES SKUs of the longest shape, named in the detail and the metadata, do not."""
    skus = [line.sku for line in missing]
    found = await session.exec(select(Product.sku, Product.available).where(col(Product.sku).in_(skus)))
    available = {sku: stock for sku, stock in found.all()}
    unknown = [sku for sku in skus if sku not in available]
    if unknown:
        named = unknown[:MAX_NAMED_SKUS]
        detail = f"unknown SKU(s): {', '.join(named)}{_and_more(unknown)}"
        return not_found("UNKNOWN_SKU", detail, skus=",".join(named))
    short = missing[:MAX_NAMED_SKUS]
    shortages = ", ".join(f"{line.sku} (requested {line.quantity}, available {available[line.sku]})" for line in short)
    detail = f"not enough stock for {shortages}{_and_more(missing)}"
    return failed_precondition("OUT_OF_STOCK", detail, skus=",".join(line.sku for line in short))


def _and_more(items: Sequence[object]) -> str:
    unnamed = len(items) - MAX_NAMED_SKUS
    return f" and {unnamed} more" if unnamed > 0 else ""


async def confirm_reservations(
    engine: AsyncEngine, orders: Sequence[uuid.UUID]
) -> list[Confirmation | PermanentFailure]:
    """Interim: one transaction per order, until the batch version lands."""
    results: list[Confirmation | PermanentFailure] = []
    for order in orders:
        try:
            results.append(await confirm_reservation(engine, order))
        except PermanentFailure as failure:
            results.append(failure)
    return results
