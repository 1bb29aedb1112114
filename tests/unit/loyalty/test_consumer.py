"""Loyalty's batch handler (loyalty.consumer.AwardingPoints) called with plain objects, its two
steps faked: no broker, no database. What it promises against real servers is proven in
tests/integration/loyalty."""

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest

from loyalty.awarding_points import Award, Outcome, points_for
from loyalty.consumer import AwardingPoints
from orderflow_contracts.cloudevents import REQUEST_ID
from orderflow_contracts.events import OrderCreated
from tests.support.events import order_created, received

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


class FakeLedger:
    """Awards each event id once; a later copy is a duplicate, answered as the first time."""

    def __init__(self) -> None:
        self.awarded: dict[str, Award] = {}

    async def award(self, events: Sequence[OrderCreated]) -> list[Award]:
        awards = []
        for event in events:
            earlier = self.awarded.get(event.event_id)
            if earlier is not None:
                awards.append(dataclasses.replace(earlier, outcome=Outcome.DUPLICATE))
                continue
            order = event.order
            points = points_for(order.total_cents)
            self.awarded[event.event_id] = Award(
                Outcome.AWARDED, order.order_id, order.customer_id, points, points, NOW
            )
            awards.append(self.awarded[event.event_id])
        return awards


class Announcements:
    def __init__(self) -> None:
        self.made: list[tuple[Award, Mapping[str, str]]] = []

    async def announce(self, award: Award, received_headers: Mapping[str, str]) -> None:
        self.made.append((award, received_headers))


async def test_each_event_is_awarded_announced_and_answered_with_its_outcome() -> None:
    ledger, announcements = FakeLedger(), Announcements()
    handler = AwardingPoints(ledger.award, announcements.announce)
    first, second = order_created("cust-1", 2599), order_created("cust-2", 700)

    results = await handler([received(first), received(second)])

    assert results == ["awarded", "awarded"]
    assert [award.points for award, _ in announcements.made] == [25, 7]


async def test_a_duplicate_is_announced_again_as_first_awarded() -> None:
    """The first delivery may have committed and died before it announced anything."""
    ledger, announcements = FakeLedger(), Announcements()
    handler = AwardingPoints(ledger.award, announcements.announce)
    event = order_created("cust-1", 1200)
    await handler([received(event)])

    results = await handler([received(event)])

    assert results == ["duplicate"]
    first, again = (award for award, _ in announcements.made)
    assert again == dataclasses.replace(first, outcome=Outcome.DUPLICATE)


async def test_the_announcement_carries_the_headers_the_event_came_with() -> None:
    announcements = Announcements()
    event = order_created("cust-1", 1200)
    arrived = received(event)
    arrived = arrived._replace(headers={**arrived.headers, REQUEST_ID: "req-42"})

    await AwardingPoints(FakeLedger().award, announcements.announce)([arrived])

    [(_, headers)] = announcements.made
    assert headers[REQUEST_ID] == "req-42"


async def test_when_awarding_fails_the_batch_fails_and_nothing_is_announced() -> None:
    """The consumer then retries the batch's messages (or finds the one at fault): nothing is acked."""
    announcements = Announcements()

    async def database_away(events: Sequence[OrderCreated]) -> list[Award]:
        raise ConnectionRefusedError("the loyalty database is away")

    with pytest.raises(ConnectionRefusedError):
        await AwardingPoints(database_away, announcements.announce)([received(order_created())])

    assert announcements.made == []
