"""What happens to an order in inventory: its stock is reserved (all lines or none), then the
reservation is confirmed (the order exists), released (the order was abandoned) or expired (no
order came within the TTL). Every step is idempotent per order id, so callers may retry freely.

    RESERVED --OrderCreated consumed--> CONFIRMED      stock sold for good
    RESERVED --ReleaseStock-----------> RELEASED       stock given back
    RESERVED --older than the TTL-----> EXPIRED        stock given back by the sweeper
    RELEASED | EXPIRED --late OrderCreated--> CONFIRMED, if the stock can be taken again

Stock is conserved at every step: available + reserved + confirmed == received for every product
(stock_conservation). Each transition moves units between those counts in one transaction.

Each transition is ONE SQL statement (data-modifying CTEs), its own transaction (orderflow_kit.db.autocommit):
one round trip, and the rows it locks are locked only while that statement runs, never while the
client is away. How it stays correct under any concurrency:
- Stock is taken by a conditional UPDATE (`... WHERE available >= quantity`) of product rows
  locked by the same statement, never read by one statement and written back by another, so two
  orders can never both take the last unit; `CHECK (available >= 0)` is the last line of defence.
- All or nothing: stock is taken only when, with the rows locked, every line has enough; else
  nothing is written at all and the answer names the lines that fell short (UNKNOWN_SKU, OUT_OF_STOCK).
- The order's reservation row is inserted (ON CONFLICT DO NOTHING) before any stock is taken, and
  the stock is taken only if that insert claimed the order. Its primary key makes a second request
  for the same order wait until the first one commits or rolls back; then it answers from what was
  stored, or goes ahead. It never takes stock a second time.
- Every transition out of RESERVED works on reservation rows locked first (in order id order
  when there are several) and checks their status under the lock, so a confirmation, a
  release and any number of sweepers racing for one reservation change it once: exactly one of
  them gives the stock back, or none.
- No deadlock. A statement that takes or gives back stock locks all the product rows it needs at
  once, in SKU byte order (`ORDER BY sku COLLATE "C"`, whatever the database's collation: the
  order Python sorts SKUs in, which restocking uses too), so two of them never wait for each
  other's products. A reservation holds its products
  while it inserts its reservation row, and that insert waits for any transaction changing a row
  of the same order: so a statement changes reservation rows only once it holds every lock it
  needs (the CTEs `enough`, `shelved`, `locked`), and then waits for nothing. Merely locking a
  reservation row (FOR NO KEY UPDATE) makes no insert wait.
  Should PostgreSQL roll one back for a deadlock or a serialization failure all the same, it is
  run again (`database.retried_on_conflict`): each transition is a whole transaction, idempotent.

Measured: each transition as it commits (`orderflow_inventory_reservations_total` by the state it
entered), and the reservations held now with the oldest one's age, read on scrape through the
partial index on held reservations (`reservation_gauges`).
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.database import retried_on_conflict
from inventory.models import ReservationStatus
from orderflow_contracts.identifiers import is_order_id
from orderflow_kit.db import autocommit, backlog_gauges
from orderflow_kit.errors import ServiceError, already_exists, failed_precondition, invalid_argument, not_found
from orderflow_kit.failures import PermanentFailure
from orderflow_kit.metrics import Source, child
from orderflow_kit.order_lines import check_order_lines

log = structlog.get_logger()

# The most SKUs one refusal names (see _why_not_taken).
MAX_NAMED_SKUS = 10

# Reservations that entered a state: RESERVED (stock taken), CONFIRMED (late ones too), RELEASED, EXPIRED.
TRANSITIONS = Counter(
    "orderflow_inventory_reservations_total", "Reservations that entered a state, by that state", ["state"]
)
for _state in ReservationStatus:
    child(TRANSITIONS, _state.value)  # each at 0 from the start


@dataclass(frozen=True)
class StockLine:
    """One line of a reservation request."""

    sku: str
    quantity: int


@dataclass(frozen=True)
class ReservedLine:
    """One line of a reservation, with the unit price the order is charged."""

    sku: str
    quantity: int
    unit_price_cents: int


# What every statement that takes stock starts with, after a CTE `request (sku, quantity)` of the
# lines to take: every product row they need, locked in SKU order, and whether every line (at
# least one) can be taken from them. The lock returns each row as its latest committed version,
# which nobody else can change until the statement ends, so the UPDATE that follows works from
# `stock.available`, never from `products.available`: an UPDATE reads the rows it scans in the
# statement's snapshot, which may be older than the lock (a restock committed while this statement
# waited for it), and it would then skip a line the lock found in stock, or compute a negative
# `available` that fails the CHECK before PostgreSQL re-reads the row. FOR NO KEY UPDATE is the
# lock UPDATE takes itself (it lets foreign-key checks of other transactions through); every lock
# in this module is that one.
_LOCK_STOCK = """
    stock AS MATERIALIZED (
        SELECT sku, available
          FROM products
         WHERE sku IN (SELECT sku FROM request)
         ORDER BY sku COLLATE "C"
           FOR NO KEY UPDATE
    ),
    enough AS (
        SELECT count(*) > 0 AND count(*) = (SELECT count(*) FROM request) AS every_line
          FROM request JOIN stock USING (sku)
         WHERE stock.available >= request.quantity
    )"""

# Claim the order, take every line's stock, record the lines. Returns each requested line (in
# request order) with the stock it found (NULL: unknown SKU) and, if it was taken, its price.
# Nothing is written unless every line is taken: the claim needs `enough`, the rest the claim.
_RESERVE = text(
    f"""
    WITH request AS (
        SELECT sku, quantity, position
          FROM unnest(CAST(:skus AS varchar[]), CAST(:quantities AS integer[]))
               WITH ORDINALITY AS request (sku, quantity, position)
    ),
    {_LOCK_STOCK},
    claim AS (
        INSERT INTO reservations (order_id, status)
        SELECT CAST(:order_id AS uuid), 'RESERVED' FROM enough WHERE every_line
        ON CONFLICT DO NOTHING
        RETURNING order_id
    ),
    taken AS (
        UPDATE products SET available = stock.available - request.quantity
          FROM request JOIN stock USING (sku), claim
         WHERE products.sku = request.sku AND stock.available >= request.quantity
        RETURNING products.sku, request.quantity, products.price_cents
    ),
    reserved AS (
        INSERT INTO reservation_lines (order_id, sku, quantity, unit_price_cents)
        SELECT claim.order_id, taken.sku, taken.quantity, taken.price_cents FROM claim, taken
    )
    SELECT request.sku, request.quantity, stock.available, taken.price_cents
      FROM request LEFT JOIN stock USING (sku) LEFT JOIN taken USING (sku)
     ORDER BY request.position
    """
)

# A repeated request's answer: the order's reservation and its lines (no row: never reserved).
_STORED = text(
    """
    SELECT reservations.status, lines.sku, lines.quantity, lines.unit_price_cents
      FROM reservations LEFT JOIN reservation_lines AS lines USING (order_id)
     WHERE reservations.order_id = :order_id
     ORDER BY lines.sku COLLATE "C"
    """
)

# Release, first step: leave a RELEASED tombstone if the order was never reserved (no row yet).
_TOMBSTONE = text(
    """
    INSERT INTO reservations (order_id, status) VALUES (CAST(:order_id AS uuid), 'RELEASED')
    ON CONFLICT DO NOTHING
    RETURNING order_id
    """
)

# Give back the stock of the reservations in a CTE `ending (order_id)`: their product rows locked
# in SKU order (as when stock is taken), then one UPDATE for them all. `shelved` has its one row
# once every product row is locked: the statement changes the reservations only after that.
_GIVE_BACK = """
    held AS (
        SELECT sku, sum(quantity) AS quantity
          FROM reservation_lines
         WHERE order_id IN (SELECT order_id FROM ending)
         GROUP BY sku
    ),
    shelf AS MATERIALIZED (
        SELECT sku
          FROM products
         WHERE sku IN (SELECT sku FROM held)
         ORDER BY sku COLLATE "C"
           FOR NO KEY UPDATE
    ),
    shelved AS (
        SELECT count(*) AS products FROM shelf
    ),
    given_back AS (
        UPDATE products SET available = products.available + held.quantity
          FROM held JOIN shelf USING (sku)
         WHERE products.sku = held.sku
    )"""

# Release, second step (the row exists now, committed): RESERVED becomes RELEASED and its stock
# goes back. Returns the status the reservation had.
_RELEASE = text(
    f"""
    WITH target AS MATERIALIZED (
        SELECT order_id, status FROM reservations WHERE order_id = :order_id FOR NO KEY UPDATE
    ),
    ending AS (
        SELECT order_id FROM target WHERE status = 'RESERVED'
    ),
    {_GIVE_BACK},
    ended AS (
        UPDATE reservations SET status = 'RELEASED'
          FROM ending, shelved
         WHERE reservations.order_id = ending.order_id
    )
    SELECT status FROM target
    """
)

# Confirm a batch: its reservations locked in order id order, then (`locked` has its one row
# once every one is locked) every RESERVED one CONFIRMED. Returns the status each one had.
_CONFIRM = text(
    """
    WITH batch AS MATERIALIZED (
        SELECT order_id, status
          FROM reservations
         WHERE order_id = ANY(CAST(:order_ids AS uuid[]))
         ORDER BY order_id
           FOR NO KEY UPDATE
    ),
    locked AS (
        SELECT count(*) AS reservations FROM batch
    ),
    confirmed AS (
        UPDATE reservations SET status = 'CONFIRMED'
          FROM batch, locked
         WHERE reservations.order_id = batch.order_id AND batch.status = 'RESERVED'
    )
    SELECT order_id, status FROM batch
    """
)

# A late confirmation, first step: lock the reservation (a racing confirmation of the same order
# waits here, then finds it CONFIRMED) and read its status.
_LOCK_RESERVATION = text("SELECT status FROM reservations WHERE order_id = :order_id FOR NO KEY UPDATE")

# A late confirmation, second step: take the reservation's lines again, all or none, and confirm
# it if they were taken. Returns the lines as _RESERVE does (no row: the reservation has no lines).
_TAKE_AGAIN = text(
    f"""
    WITH request AS (
        SELECT sku, quantity FROM reservation_lines WHERE order_id = :order_id
    ),
    {_LOCK_STOCK},
    taken AS (
        UPDATE products SET available = stock.available - request.quantity
          FROM request JOIN stock USING (sku), enough
         WHERE enough.every_line AND products.sku = request.sku AND stock.available >= request.quantity
        RETURNING products.sku, products.price_cents
    ),
    confirmed AS (
        UPDATE reservations SET status = 'CONFIRMED'
          FROM enough
         WHERE enough.every_line AND reservations.order_id = :order_id
    )
    SELECT request.sku, request.quantity, stock.available, taken.price_cents
      FROM request LEFT JOIN stock USING (sku) LEFT JOIN taken USING (sku)
     ORDER BY request.sku COLLATE "C"
    """
)

# Expire at most :limit reservations held longer than :ttl, oldest first, and give their stock
# back. SKIP LOCKED: sweepers running at once each take other rows.
_EXPIRE = text(
    f"""
    WITH ending AS MATERIALIZED (
        SELECT order_id
          FROM reservations
         WHERE status = 'RESERVED' AND created_at < now() - CAST(:ttl AS interval)
         ORDER BY created_at
         LIMIT :limit
           FOR NO KEY UPDATE SKIP LOCKED
    ),
    {_GIVE_BACK},
    ended AS (
        UPDATE reservations SET status = 'EXPIRED'
          FROM ending, shelved
         WHERE reservations.order_id = ending.order_id
        RETURNING reservations.order_id
    )
    SELECT order_id FROM ended
    """
)


async def reserve_stock(engine: AsyncEngine, requested_order_id: str, items: Sequence[StockLine]) -> list[ReservedLine]:
    """Reserve every line of an order or none, and return the reserved lines (in SKU order) with
    the unit price the order is charged.

    A repeat with the same lines returns the stored reservation and takes nothing. Raises
    VALIDATION_FAILED, UNKNOWN_SKU, OUT_OF_STOCK, RESERVATION_CONFLICT (same order, other
    lines), RESERVATION_RELEASED (the order was released, perhaps before this call arrived) or
    RESERVATION_EXPIRED."""
    structlog.contextvars.bind_contextvars(order_id=requested_order_id)
    order_id = _parse_order_id(requested_order_id)
    lines = _validated_lines(items)
    request = {
        "order_id": order_id,
        "skus": [line.sku for line in lines],
        "quantities": [line.quantity for line in lines],
    }

    async def reserve() -> list[ReservedLine]:
        async with autocommit(engine) as connection:
            outcome = (await connection.execute(_RESERVE, request)).all()
            if all(line.price_cents is not None for line in outcome):
                child(TRANSITIONS, ReservationStatus.RESERVED.value).inc()
                return [ReservedLine(line.sku, line.quantity, line.price_cents) for line in outcome]
            # Nothing was taken: the order was reserved (or released) before, or the stock is short.
            # Read with a new snapshot: a request for the same order that this one waited for is
            # committed now, and visible.
            stored = (await connection.execute(_STORED, {"order_id": order_id})).all()
        if not stored:
            raise _why_not_taken(outcome)
        return _stored_reservation(order_id, stored, lines)

    return await retried_on_conflict(reserve)


async def release_stock(engine: AsyncEngine, requested_order_id: str) -> bool:
    """Give an order's reserved stock back, once; False when there was nothing (left) to release
    (released before, or expired).

    Releasing an order that was never reserved leaves a RELEASED tombstone: a ReserveStock for it
    that arrives late (it timed out at the caller, who then released) fails instead of taking
    stock that nobody would ever release. A CONFIRMED reservation is refused
    (RESERVATION_CONFIRMED): its order exists, so its stock is sold and stays taken."""
    structlog.contextvars.bind_contextvars(order_id=requested_order_id)
    order_id = _parse_order_id(requested_order_id)

    async def release() -> ReservationStatus | None:
        async with autocommit(engine) as connection:
            if (await connection.execute(_TOMBSTONE, {"order_id": order_id})).first() is not None:
                return None
            # The row existed (or a reservation in flight committed it while the insert waited): a
            # new statement, so a new snapshot, sees it.
            return ReservationStatus((await connection.execute(_RELEASE, {"order_id": order_id})).scalar_one())

    status = await retried_on_conflict(release)
    if status is None:
        return False
    if status == ReservationStatus.CONFIRMED:
        raise failed_precondition(
            "RESERVATION_CONFIRMED",
            f"order {order_id} is confirmed (the order exists): its stock cannot be released",
            order_id=str(order_id),
        )
    released = status == ReservationStatus.RESERVED
    if released:
        child(TRANSITIONS, ReservationStatus.RELEASED.value).inc()
    return released


class Confirmation(StrEnum):
    """What confirming a reservation did (the consumer logs it as the event's outcome)."""

    CONFIRMED = "confirmed"
    # It was confirmed already (a redelivery, a replay, a second copy in the batch): nothing changed.
    # The consumer counts it as a duplicate (jetstream_consumer.DUPLICATE).
    DUPLICATE = "duplicate"
    # The reservation had expired or been released, and its stock was taken again.
    CONFIRMED_LATE = "confirmed-late"


class NoReservation(PermanentFailure):
    """An OrderCreated for an order that reserved nothing here: not ours, or a bug upstream."""


class StockGone(PermanentFailure):
    """The order exists, but its reservation expired (or was released) and the stock it held has
    been sold since: an operator restocks, then replays the dead-lettered event."""


async def confirm_reservations(
    engine: AsyncEngine, order_ids: Sequence[uuid.UUID]
) -> list[Confirmation | PermanentFailure]:
    """These orders exist (their OrderCreated events arrived): their stock is sold for good.
    Returns one outcome per order, in the same order; an order that cannot be confirmed gets its
    PermanentFailure (NoReservation, StockGone) as its outcome, and never holds the others back.
    Idempotent: confirming again changes nothing (DUPLICATE), and an order listed twice is
    confirmed once, its copies answering DUPLICATE. Raises only when the whole batch fails
    (the database is away): nothing of it may be acknowledged then, and a retry is safe.

    Every RESERVED reservation of the batch is confirmed by one statement. A late event, for a
    reservation that expired or was released meanwhile (the order's event took longer than the
    TTL, or orders could not tell whether its commit succeeded), takes the same lines again if the
    stock is there (all or none, like a reservation), in a transaction of its own. If it is not,
    StockGone: stock is never taken below zero, and the order is left for an operator."""
    distinct = list(dict.fromkeys(order_ids))

    async def confirm() -> dict[uuid.UUID, ReservationStatus]:
        async with autocommit(engine) as connection:
            return {
                row.order_id: ReservationStatus(row.status)
                for row in await connection.execute(_CONFIRM, {"order_ids": distinct})
            }

    found = await retried_on_conflict(confirm)
    outcomes: dict[uuid.UUID, Confirmation | PermanentFailure] = {}
    for order_id in distinct:
        status = found.get(order_id)
        if status is None:
            outcomes[order_id] = NoReservation(f"order {order_id} has no reservation in inventory")
        elif status == ReservationStatus.RESERVED:
            outcomes[order_id] = Confirmation.CONFIRMED
        elif status == ReservationStatus.CONFIRMED:
            outcomes[order_id] = Confirmation.DUPLICATE
        else:
            outcomes[order_id] = await _confirm_late(engine, order_id)
    confirmed = sum(outcome in (Confirmation.CONFIRMED, Confirmation.CONFIRMED_LATE) for outcome in outcomes.values())
    child(TRANSITIONS, ReservationStatus.CONFIRMED.value).inc(confirmed)
    answered: set[uuid.UUID] = set()
    results: list[Confirmation | PermanentFailure] = []
    for order_id in order_ids:
        outcome = outcomes[order_id]
        if order_id in answered and isinstance(outcome, Confirmation):
            outcome = Confirmation.DUPLICATE
        answered.add(order_id)
        results.append(outcome)
    return results


async def confirm_reservation(engine: AsyncEngine, order_id: uuid.UUID) -> Confirmation:
    """Confirm one order (confirm_reservations of a batch of one); raises its PermanentFailure."""
    [outcome] = await confirm_reservations(engine, [order_id])
    if isinstance(outcome, PermanentFailure):
        raise outcome
    return outcome


async def _confirm_late(engine: AsyncEngine, order_id: uuid.UUID) -> Confirmation | PermanentFailure:
    """Take the stock of an EXPIRED or RELEASED reservation again, all or none, and confirm it."""

    async def take_again() -> tuple[ReservationStatus, list[Row[Any]]]:
        async with engine.begin() as connection:
            status = ReservationStatus(
                (await connection.execute(_LOCK_RESERVATION, {"order_id": order_id})).scalar_one()
            )
            if status == ReservationStatus.CONFIRMED:  # by a confirmation racing this one
                return status, []
            return status, list((await connection.execute(_TAKE_AGAIN, {"order_id": order_id})).all())

    status, outcome = await retried_on_conflict(take_again)
    if status == ReservationStatus.CONFIRMED:
        return Confirmation.DUPLICATE
    if not outcome:
        return NoReservation(f"order {order_id} was released before it reserved anything")
    if any(line.price_cents is None for line in outcome):
        refusal = _why_not_taken(outcome)
        log.error("order without stock", order_id=str(order_id), reservation=status.lower(), error=refusal.detail)
        return StockGone(
            f"order {order_id} exists but its reservation was {status.lower()} and its stock is gone: {refusal.detail}"
        )
    log.warning("reservation confirmed late; stock taken again", order_id=str(order_id), reservation=status.lower())
    return Confirmation.CONFIRMED_LATE


async def expire_reservations(engine: AsyncEngine, *, ttl: timedelta, limit: int) -> list[uuid.UUID]:
    """Give back the stock of at most `limit` reservations held longer than `ttl` and never
    confirmed, oldest first; returns their order ids.

    Safe with any number of sweepers at once: each locks the rows it takes and skips those locked
    by another (SKIP LOCKED), and the status check makes a second expiry of a row impossible."""

    async def expire() -> list[uuid.UUID]:
        async with autocommit(engine) as connection:
            return list((await connection.execute(_EXPIRE, {"ttl": ttl, "limit": limit})).scalars())

    expired = await retried_on_conflict(expire)
    child(TRANSITIONS, ReservationStatus.EXPIRED.value).inc(len(expired))
    return expired


# Through the partial index reservations_held_since: as cheap as the number of reservations held.
_HELD = text(
    "SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0) "
    "FROM reservations WHERE status = 'RESERVED'"
)


def reservation_gauges(engine: AsyncEngine) -> Source:
    """Reservations held (RESERVED) now and the oldest one's age, read when Prometheus scrapes.
    (The other states only grow, so their counters say more than a count of rows would.)"""

    return backlog_gauges(
        engine,
        _HELD,
        waiting=("orderflow_inventory_reservations_held", "Reservations holding stock now"),
        oldest_age=(
            "orderflow_inventory_oldest_held_reservation_age_seconds",
            "How long the oldest reservation still held has waited for its order (0 when none is held)",
        ),
    )


def _parse_order_id(order_id: str) -> uuid.UUID:
    if not is_order_id(order_id):
        raise invalid_argument(
            f"order_id must be a UUID in canonical lower-case form, got {order_id[:80]!r}", field="order_id"
        )
    return uuid.UUID(order_id)


def _validated_lines(items: Sequence[StockLine]) -> list[StockLine]:
    """The request's lines in SKU order (the order their rows are locked in), or VALIDATION_FAILED."""
    check_order_lines(items)
    return sorted(items, key=lambda line: line.sku)


def _stored_reservation(order_id: uuid.UUID, stored: Sequence[Row[Any]], lines: list[StockLine]) -> list[ReservedLine]:
    """The answer to a repeated request: the stored lines, if the request asks for the same ones."""
    status = ReservationStatus(stored[0].status)
    if status == ReservationStatus.RELEASED:
        raise failed_precondition(
            "RESERVATION_RELEASED",
            f"order {order_id} was released and cannot reserve stock again",
            order_id=str(order_id),
        )
    if status == ReservationStatus.EXPIRED:
        raise failed_precondition(
            "RESERVATION_EXPIRED", f"order {order_id} expired and cannot reserve stock again", order_id=str(order_id)
        )
    reserved = [ReservedLine(row.sku, row.quantity, row.unit_price_cents) for row in stored if row.sku is not None]
    if [(line.sku, line.quantity) for line in reserved] != [(line.sku, line.quantity) for line in lines]:
        raise already_exists(
            "RESERVATION_CONFLICT", f"order {order_id} already reserved different lines", order_id=str(order_id)
        )
    return reserved


def _why_not_taken(outcome: Sequence[Row[Any]]) -> ServiceError:
    """UNKNOWN_SKU or OUT_OF_STOCK, from the stock each line found (`available`, NULL when the SKU
    is unknown). Names at most MAX_NAMED_SKUS of them: a refusal must fit in gRPC's trailing
    metadata (8 KB), and MAX_ORDER_LINES SKUs of the longest shape, named in the detail and the
    metadata, do not."""
    unknown = [line.sku for line in outcome if line.available is None]
    if unknown:
        named = unknown[:MAX_NAMED_SKUS]
        detail = f"unknown SKU(s): {', '.join(named)}{_and_more(unknown)}"
        return not_found("UNKNOWN_SKU", detail, skus=",".join(named))
    missing = [line for line in outcome if line.available < line.quantity]
    short = missing[:MAX_NAMED_SKUS]
    shortages = ", ".join(f"{line.sku} (requested {line.quantity}, available {line.available})" for line in short)
    detail = f"not enough stock for {shortages}{_and_more(missing)}"
    return failed_precondition("OUT_OF_STOCK", detail, skus=",".join(line.sku for line in short))


def _and_more(items: Sequence[object]) -> str:
    unnamed = len(items) - MAX_NAMED_SKUS
    return f" and {unnamed} more" if unnamed > 0 else ""
