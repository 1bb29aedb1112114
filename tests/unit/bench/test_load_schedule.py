"""The load generator's loops (orderflow_bench.load), on a clock of the test's own: an open loop
charges each order from the moment it was due, however late it was sent (no coordinated
omission), and never waits for an answer before sending the next; a closed loop keeps exactly N
requests in flight."""

import asyncio

import pytest

from orderflow_bench.load import LoadSetup, Orders, closed_loop, intended_offsets, open_loop, problem_code
from orderflow_bench.scenarios import Kind, Scenario


class FakeClock:
    """Time that passes only when the code under test sleeps, or when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def test_an_open_loop_spaces_its_orders_evenly_at_the_rate() -> None:
    assert intended_offsets(4, 1.5) == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]


async def test_an_order_sent_late_keeps_the_time_it_was_due() -> None:
    clock = FakeClock()
    sends: list[tuple[float, float]] = []  # (intended, actually sent)

    async def send(intended: float) -> None:
        sends.append((intended, clock.now))
        if len(sends) == 1:
            clock.now += 0.35  # the first send holds the loop while the next three fall due

    await open_loop(send, intended_offsets(10, 1), clock=clock, sleep=clock.sleep)

    intended = [round(due - 1000.0, 6) for due, _ in sends]
    assert intended == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    late = [round(sent - due, 6) for due, sent in sends[1:4]]
    assert all(delay > 0 for delay in late), late


async def test_an_open_loop_sends_while_earlier_orders_are_unanswered() -> None:
    clock = FakeClock()
    offsets = intended_offsets(10, 1)
    everything_sent = asyncio.Event()
    sent = 0

    async def send(intended: float) -> None:
        nonlocal sent
        sent += 1
        if sent == len(offsets):
            everything_sent.set()
        await everything_sent.wait()  # no answer until every order is out

    await asyncio.wait_for(open_loop(send, offsets, clock=clock, sleep=clock.sleep), timeout=10)

    assert sent == len(offsets)


async def test_a_closed_loop_keeps_its_connections_busy_and_no_more() -> None:
    clock = FakeClock()
    in_flight = most = sent = 0

    async def send(intended: float) -> None:
        nonlocal in_flight, most, sent
        sent += 1
        in_flight += 1
        most = max(most, in_flight)
        await clock.sleep(0.1)
        in_flight -= 1

    await closed_loop(send, connections=3, duration=1.0, clock=clock)

    assert most == 3
    assert sent > 3


def setup() -> LoadSetup:
    return LoadSetup("http://gateway", ("token-a", "token-b"), ("SKU-1", "SKU-2", "SKU-3"), "HOT")


def test_every_hot_order_is_for_the_hot_sku() -> None:
    orders = Orders(setup(), Scenario("hot-2", Kind.HOT, 1.0, 2))

    bodies = {body for body, _ in (next(orders) for _ in range(20))}

    assert bodies == {b'{"items":[{"sku":"HOT","quantity":1}]}'}


def test_customers_take_turns_and_each_order_gets_a_key_of_its_own() -> None:
    orders = Orders(setup(), Scenario("idempotent-2", Kind.IDEMPOTENT, 1.0, 2))

    headers = [next(orders)[1] for _ in range(4)]

    assert [h["Authorization"] for h in headers] == ["Bearer token-a", "Bearer token-b"] * 2
    keys = [h["Idempotency-Key"] for h in headers]
    assert len(set(keys)) == 4
    assert all(key.startswith('"') and key.endswith('"') for key in keys)


def test_orders_without_idempotency_keys_carry_none() -> None:
    orders = Orders(setup(), Scenario("closed-2", Kind.CLOSED, 1.0, 2))

    assert "Idempotency-Key" not in next(orders)[1]


@pytest.mark.parametrize(
    ("body", "code"),
    [(b'{"status": 409, "code": "OUT_OF_STOCK"}', "OUT_OF_STOCK"), (b"<html>", "-"), (b'["code"]', "-")],
)
def test_an_error_is_counted_by_its_problem_code(body: bytes, code: str) -> None:
    assert problem_code(body) == code
