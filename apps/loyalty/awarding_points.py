"""What happens to an order in loyalty: its OrderCreated event earns the customer one point per
whole currency unit of the order total, exactly once; and anyone may read a customer's balance.

Exactly once = the dedupe row (keyed by the event's ce-id), the ledger entry and the balance change
commit in ONE transaction, and the consumer acks the message only after that commit.

Either way the caller learns what the event earned: the ledger entry keeps the balance right
after it, so an event processed before is answered exactly as the first time (the consumer
announces it again, see announcing_points)."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy.exc
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import col

from loyalty.dedupe import claim_event
from loyalty.models import Balance, LedgerEntry
from orderflow_contracts.events import MAX_POINTS, OrderCreated
from orderflow_contracts.identifiers import is_customer_id
from orderflow_kit.errors import invalid_argument, unavailable
from orderflow_kit.failures import PermanentFailure, is_dependency_failure

CENTS_PER_POINT = 100
# PostgreSQL's SQLSTATE when a BIGINT balance would overflow.
NUMERIC_VALUE_OUT_OF_RANGE = "22003"


class Outcome(StrEnum):
    AWARDED = "awarded"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Award:
    """What an OrderCreated event earned: now (AWARDED), or when it was first processed (DUPLICATE)."""

    outcome: Outcome
    order_id: uuid.UUID
    customer_id: str
    points: int
    balance_after: int
    awarded_at: datetime


@dataclass(frozen=True)
class CustomerBalance:
    customer_id: str
    points: int
    orders_awarded: int


def points_for(total_cents: int) -> int:
    return total_cents // CENTS_PER_POINT


async def award_points(engine: AsyncEngine, event: OrderCreated) -> Award:
    """Award the order's points unless this event id was processed before; one transaction.
    A balance that would pass the largest storable number refuses the award for good (retrying
    cannot help): nothing is written, and the event is dead-lettered with that reason."""
    try:
        return await _award(engine, event)
    except sqlalchemy.exc.DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != NUMERIC_VALUE_OUT_OF_RANGE:
            raise
        raise PermanentFailure(
            f"customer {event.order.customer_id}'s balance would exceed {MAX_POINTS} points"
        ) from error


async def _award(engine: AsyncEngine, event: OrderCreated) -> Award:
    order = event.order
    points = points_for(order.total_cents)
    async with engine.begin() as connection:
        if not await claim_event(connection, event.event_id):
            return await _earlier_award(connection, event.event_id)
        new_balance = insert(Balance).values(customer_id=order.customer_id, points=points, orders_awarded=1)
        balance_after: int = (
            await connection.execute(
                new_balance.on_conflict_do_update(
                    index_elements=[col(Balance.customer_id)],
                    set_={
                        "points": col(Balance.points) + new_balance.excluded.points,
                        "orders_awarded": col(Balance.orders_awarded) + 1,
                    },
                ).returning(col(Balance.points))
            )
        ).scalar_one()
        awarded_at: datetime = (
            await connection.execute(
                insert(LedgerEntry)
                .values(
                    customer_id=order.customer_id,
                    order_id=order.order_id,
                    event_id=event.event_id,
                    points=points,
                    balance_after=balance_after,
                )
                .returning(col(LedgerEntry.created_at))
            )
        ).scalar_one()
    return Award(Outcome.AWARDED, order.order_id, order.customer_id, points, balance_after, awarded_at)


async def _earlier_award(connection: AsyncConnection, event_id: str) -> Award:
    """The ledger entry the event wrote when it was first processed (same transaction as its dedupe row)."""
    entry = (
        await connection.execute(
            select(
                col(LedgerEntry.order_id),
                col(LedgerEntry.customer_id),
                col(LedgerEntry.points),
                col(LedgerEntry.balance_after),
                col(LedgerEntry.created_at),
            ).where(col(LedgerEntry.event_id) == event_id)
        )
    ).one()
    return Award(Outcome.DUPLICATE, *entry)


async def get_balance(engine: AsyncEngine, customer_id: str) -> CustomerBalance:
    """A customer with nothing awarded yet has a zero balance, not an error."""
    if not is_customer_id(customer_id):
        raise invalid_argument(f"customer_id {customer_id[:80]!r} is not a valid customer id", field="customer_id")
    query = select(col(Balance.points), col(Balance.orders_awarded)).where(col(Balance.customer_id) == customer_id)
    try:
        async with engine.connect() as connection:
            row = (await connection.execute(query)).one_or_none()
    except Exception as error:
        if is_dependency_failure(error):
            raise unavailable("DATABASE_UNAVAILABLE", "the loyalty database is unavailable") from error
        raise
    if row is None:
        return CustomerBalance(customer_id, 0, 0)
    return CustomerBalance(customer_id, row.points, row.orders_awarded)
