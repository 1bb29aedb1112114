"""place_many's pacing, with placements held until the test lets them finish: a few placements at
once, a bounded number of requests read ahead of the answer awaited, answers in request order."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from orders.inventory_client import PricedLine
from orders.models import OrderStatus
from orders.placing_many import Answer, OrderRequest, place_many
from orders.placing_orders import Orders, PlacedOrder, RequestedItem

CONCURRENCY, WINDOW = 2, 5


class HeldOrders:
    """Stands in for Orders: each placement waits until the test releases it by index."""

    def __init__(self) -> None:
        self.released: dict[str, asyncio.Event] = {}
        self.placing = 0
        self.most_placing_at_once = 0

    async def place(
        self, customer_id: str, items: Sequence[RequestedItem], *, client_request_id: str, caller_time_remaining: Any
    ) -> PlacedOrder:
        self.placing += 1
        self.most_placing_at_once = max(self.most_placing_at_once, self.placing)
        try:
            await self.released.setdefault(client_request_id, asyncio.Event()).wait()
        finally:
            self.placing -= 1
        line = PricedLine(items[0].sku, items[0].quantity, 100)
        return PlacedOrder(
            uuid.uuid4(), customer_id, OrderStatus.CREATED, 100, "EUR", datetime.now(UTC), client_request_id, (line,)
        )

    def release(self, *numbers: int) -> None:
        for number in numbers:
            self.released.setdefault(f"r-{number}", asyncio.Event()).set()


class CountedRequests:
    """An endless request stream that counts how many requests were read from it."""

    def __init__(self) -> None:
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[OrderRequest]:
        while True:
            self.read += 1
            yield OrderRequest("c-1", [RequestedItem("SKU-1", 1)], f"r-{self.read - 1}")


async def settle() -> None:
    """Let every task that can run, run (no timing: a bounded number of loop turns)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def test_requests_are_read_a_window_ahead_and_placed_a_few_at_once_answers_in_order() -> None:
    orders, requests = HeldOrders(), CountedRequests()
    answers = place_many(cast(Orders, orders), requests, concurrency=CONCURRENCY, window=WINDOW)
    first: asyncio.Task[Answer] = asyncio.create_task(anext(answers))
    await settle()

    assert requests.read == WINDOW  # no more read while the oldest is unanswered
    assert orders.placing == CONCURRENCY

    orders.release(1, 2)  # later ones finish first: their answers wait for the oldest
    await settle()
    assert not first.done()
    assert requests.read == WINDOW

    orders.release(0)
    assert (await first).index == 0
    assert (await anext(answers)).index == 1
    assert (await anext(answers)).index == 2
    await settle()
    assert requests.read == WINDOW + 3  # each answer given lets one more request in
    assert orders.most_placing_at_once == CONCURRENCY
    await answers.aclose()


async def test_closing_the_answers_stops_reading_and_cancels_what_had_not_started() -> None:
    orders, requests = HeldOrders(), CountedRequests()
    answers = place_many(cast(Orders, orders), requests, concurrency=CONCURRENCY, window=WINDOW)
    orders.release(0)
    assert (await anext(answers)).index == 0

    await answers.aclose()
    read = requests.read
    await settle()

    assert requests.read == read
    assert orders.placing == 0
