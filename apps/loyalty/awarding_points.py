"""What happens to an order in loyalty: its OrderCreated event earns the customer one point per
whole currency unit of the order total, exactly once; and anyone may read a customer's balance.

Exactly once = the dedupe rows (keyed by the events' ce-ids), the ledger entries and the balance
changes commit in ONE transaction, and the consumer acks the messages only after that commit.

Events come in batches (the consumer's, see orderflow_kit.batches), and a batch is ONE statement,
a transaction of its own, however many events it holds: claim every event id at once (dedupe),
add each customer's points to its balance and write one ledger entry per event. Only a batch
holding events processed before (a redelivery, a replay) reads their earlier awards, in a second
statement.

Either way the caller learns what each event earned: the ledger entry keeps the balance right
after it, so an event processed before is answered exactly as the first time (the consumer
announces it again, see announcing_points)."""

import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy.exc
from prometheus_client import Counter
from sqlalchemy import Row, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import col

from loyalty.dedupe import CLAIM
from loyalty.models import Balance
from orderflow_contracts.events import MAX_POINTS, OrderCreated
from orderflow_contracts.identifiers import is_customer_id
from orderflow_kit.db import autocommit
from orderflow_kit.errors import invalid_argument, unavailable
from orderflow_kit.failures import PermanentFailure, is_dependency_failure

CENTS_PER_POINT = 100

# Counted after the commit, for new awards only: equal to the ledger's sum while the process lives.
POINTS_AWARDED = Counter("orderflow_loyalty_points_awarded_total", "Loyalty points awarded (duplicates not counted)")
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


async def award_points(engine: AsyncEngine, events: Sequence[OrderCreated]) -> list[Award]:
    """Award each event's points unless its event id was processed before (also earlier in the
    same batch); one statement for the batch, one Award per event, in order.

    A balance that would pass the largest storable number refuses the whole batch for good
    (PermanentFailure): nothing is written. The consumer then awards each event alone, so only
    the event that overflows is dead-lettered, with that reason."""
    if not events:
        return []
    try:
        async with autocommit(engine) as connection:
            awards = await _award(connection, events)
    except sqlalchemy.exc.DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != NUMERIC_VALUE_OUT_OF_RANGE:
            raise
        customers = ", ".join(sorted({event.order.customer_id for event in events}))
        raise PermanentFailure(f"the balance of customer {customers} would exceed {MAX_POINTS} points") from error
    POINTS_AWARDED.inc(sum(award.points for award in awards if award.outcome is Outcome.AWARDED))
    return awards


# The batch in one statement, a transaction of its own. Claim every event id (dedupe.CLAIM); the
# first copy of each id claimed earns its points: added up per customer into the balances (one
# upsert, customers in one order, so that concurrent batches lock balances alike), and one
# ledger entry each with the balance right after it (the customer's new balance less the points
# of its events later in the batch). Answered: the new ledger entries.
_AWARD = text(
    f"""
    WITH batch AS (
        SELECT * FROM unnest(
            CAST(:event_ids AS text[]), CAST(:order_ids AS uuid[]), CAST(:customer_ids AS text[]),
            CAST(:points AS bigint[])
        ) WITH ORDINALITY AS batch (event_id, order_id, customer_id, points, position)
    ),
    claimed AS ({CLAIM}),
    first_copies AS (
        SELECT DISTINCT ON (event_id) batch.* FROM batch JOIN claimed USING (event_id) ORDER BY event_id, position
    ),
    balances_after AS (
        INSERT INTO balances (customer_id, points, orders_awarded)
        SELECT customer_id, sum(points), count(*) FROM first_copies GROUP BY customer_id ORDER BY customer_id
        ON CONFLICT (customer_id) DO UPDATE
        SET points = balances.points + excluded.points,
            orders_awarded = balances.orders_awarded + excluded.orders_awarded
        RETURNING customer_id, points
    ),
    entries AS (
        INSERT INTO ledger (customer_id, order_id, event_id, points, balance_after)
        SELECT customer_id, order_id, event_id, first_copies.points,
            balances_after.points - coalesce(sum(first_copies.points) OVER (
                PARTITION BY customer_id ORDER BY position ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING
            ), 0)
        FROM first_copies JOIN balances_after USING (customer_id)
        RETURNING event_id, order_id, customer_id, points, balance_after, created_at
    )
    SELECT * FROM entries
    """
)
_EARLIER_AWARDS = text(
    """
    SELECT event_id, order_id, customer_id, points, balance_after, created_at
    FROM ledger WHERE event_id = ANY(CAST(:event_ids AS text[]))
    """
)


async def _award(connection: AsyncConnection, events: Sequence[OrderCreated]) -> list[Award]:
    parameters = {
        "event_ids": [event.event_id for event in events],
        "order_ids": [event.order.order_id for event in events],
        "customer_ids": [event.order.customer_id for event in events],
        "points": [points_for(event.order.total_cents) for event in events],
    }
    found = _awards(Outcome.AWARDED, await connection.execute(_AWARD, parameters))
    earlier = [event.event_id for event in events if event.event_id not in found]
    if earlier:
        # Processed before: read in a statement of its own, whose snapshot also holds the awards
        # of a batch that committed while the one above waited for its dedupe rows.
        found |= _awards(Outcome.DUPLICATE, await connection.execute(_EARLIER_AWARDS, {"event_ids": earlier}))
    answers = []
    answered: set[str] = set()
    for event in events:
        award = found[event.event_id]
        if event.event_id in answered and award.outcome is Outcome.AWARDED:
            award = dataclasses.replace(award, outcome=Outcome.DUPLICATE)  # a second copy in this batch
        answered.add(event.event_id)
        answers.append(award)
    return answers


def _awards(outcome: Outcome, rows: Iterable[Row[Any]]) -> dict[str, Award]:
    return {
        row.event_id: Award(
            outcome,
            row.order_id,
            row.customer_id,
            row.points,
            row.balance_after,
            row.created_at,
        )
        for row in rows
    }


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


@dataclass(frozen=True)
class AwardCounts:
    """The ledger as a whole, for reconciliation: one entry per award, so `awards` ==
    `orders_awarded` unless some order was awarded twice."""

    awards: int
    orders_awarded: int
    points: int


_AWARD_COUNTS = text("SELECT count(*), count(DISTINCT order_id), coalesce(sum(points), 0) FROM ledger")


async def count_awards(engine: AsyncEngine) -> AwardCounts:
    """Every award the ledger holds, now (CountAwards)."""
    try:
        async with engine.connect() as connection:
            awards, orders_awarded, points = (await connection.execute(_AWARD_COUNTS)).one()
    except Exception as error:
        if is_dependency_failure(error):
            raise unavailable("DATABASE_UNAVAILABLE", "the loyalty database is unavailable") from error
        raise
    return AwardCounts(int(awards), int(orders_awarded), int(points))
