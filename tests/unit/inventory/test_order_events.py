"""Inventory's batch handler (inventory.order_events.ConfirmingReservations) called with plain
objects, its two steps faked: no broker, no database. What it promises against real servers is
proven in tests/integration/inventory."""

import uuid
from collections.abc import Mapping, Sequence

import pytest

from inventory.order_events import ConfirmingReservations
from inventory.reservations import Confirmation, NoReservation, StockGone
from orderflow_contracts.events import OrderCreated
from orderflow_kit.failures import PermanentFailure
from tests.support.events import order_created, received


class FakeReservations:
    """Answers each order id as `outcomes` says, and remembers what it was asked."""

    def __init__(self, outcomes: Mapping[uuid.UUID, Confirmation | PermanentFailure]) -> None:
        self.outcomes = outcomes
        self.asked: list[list[uuid.UUID]] = []

    async def confirm(self, order_ids: Sequence[uuid.UUID]) -> list[Confirmation | PermanentFailure]:
        self.asked.append(list(order_ids))
        return [self.outcomes[order_id] for order_id in order_ids]


class Announcements:
    def __init__(self) -> None:
        self.made: list[tuple[uuid.UUID, Confirmation]] = []

    async def announce(self, created: OrderCreated, confirmation: Confirmation, headers: Mapping[str, str]) -> None:
        self.made.append((created.order.order_id, confirmation))


async def test_each_order_is_confirmed_once_in_one_call_announced_and_answered_with_its_outcome() -> None:
    events = [received(order_created()) for _ in range(3)]
    late, confirmed, again = (event.event.order.order_id for event in events)
    reservations = FakeReservations(
        {late: Confirmation.CONFIRMED_LATE, confirmed: Confirmation.CONFIRMED, again: Confirmation.DUPLICATE}
    )
    announcements = Announcements()

    results = await ConfirmingReservations(reservations.confirm, announcements.announce)(events)

    assert reservations.asked == [[late, confirmed, again]]
    assert results == ["confirmed-late", "confirmed", "duplicate"]
    assert announcements.made == [
        (late, Confirmation.CONFIRMED_LATE),
        (confirmed, Confirmation.CONFIRMED),
        (again, Confirmation.DUPLICATE),  # the first delivery may have died before announcing it
    ]


@pytest.mark.parametrize("refusal", [NoReservation("no reservation"), StockGone("stock gone")])
async def test_an_order_that_cannot_be_confirmed_fails_alone_and_is_not_announced(refusal: PermanentFailure) -> None:
    refused, fine = received(order_created()), received(order_created())
    reservations = FakeReservations(
        {refused.event.order.order_id: refusal, fine.event.order.order_id: Confirmation.CONFIRMED}
    )
    announcements = Announcements()

    results = await ConfirmingReservations(reservations.confirm, announcements.announce)([refused, fine])

    assert results == [refusal, "confirmed"]
    assert announcements.made == [(fine.event.order.order_id, Confirmation.CONFIRMED)]
