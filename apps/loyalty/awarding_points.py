"""What happens to an order in loyalty: its OrderCreated event earns the customer one point per
whole currency unit of the order total, exactly once; and anyone may read a customer's balance.

Exactly once = the dedupe row (keyed by the event's ce-id), the ledger entry and the balance change
commit in ONE transaction, and the consumer acks the message only after that commit."""

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from loyalty.dedupe import claim_event
from loyalty.models import Balance, LedgerEntry
from orderflow_contracts.events import OrderCreated
from orderflow_contracts.identifiers import is_customer_id
from orderflow_kit.errors import invalid_argument, unavailable
from orderflow_kit.failures import is_dependency_failure

CENTS_PER_POINT = 100


class Outcome(StrEnum):
    AWARDED = "awarded"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class CustomerBalance:
    customer_id: str
    points: int
    orders_awarded: int


def points_for(total_cents: int) -> int:
    return total_cents // CENTS_PER_POINT


async def award_points(engine: AsyncEngine, event: OrderCreated) -> Outcome:
    """Award the order's points unless this event id was processed before; one transaction."""
    order = event.order
    points = points_for(order.total_cents)
    async with engine.begin() as connection:
        if not await claim_event(connection, event.event_id):
            return Outcome.DUPLICATE
        await connection.execute(
            insert(LedgerEntry).values(
                customer_id=order.customer_id, order_id=order.order_id, event_id=event.event_id, points=points
            )
        )
        new_balance = insert(Balance).values(customer_id=order.customer_id, points=points, orders_awarded=1)
        await connection.execute(
            new_balance.on_conflict_do_update(
                index_elements=[col(Balance.customer_id)],
                set_={
                    "points": col(Balance.points) + new_balance.excluded.points,
                    "orders_awarded": col(Balance.orders_awarded) + 1,
                },
            )
        )
    return Outcome.AWARDED


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
