"""The reconciliation's verdicts from counts: what is catching up, what is broken."""

from gateway.reconciliation import (
    AwardFigures,
    Check,
    InFlight,
    OutboxFigures,
    Status,
    StockFigures,
    awarded_check,
    overall,
    published_check,
    stock_check,
)

SETTLED = InFlight(consumer_backlog=0, dead_letters=0)


def outbox(stored: int, pending: int = 0, oldest: float = 0.0) -> OutboxFigures:
    return OutboxFigures(stored, pending, oldest)


def test_stock_is_conserved_unless_a_product_breaks_the_equation() -> None:
    assert stock_check(StockFigures(3, [])).status is Status.OK
    broken = stock_check(StockFigures(3, ["MUG-1"]))
    assert broken.status is Status.FAILED
    assert "MUG-1" in broken.summary


def test_a_pending_event_is_catching_up_until_it_is_later_than_the_allowance() -> None:
    assert published_check(outbox(10), 5.0).status is Status.OK
    assert published_check(outbox(10, pending=2, oldest=0.3), 5.0).status is Status.CATCHING_UP
    late = published_check(outbox(10, pending=2, oldest=7.5), 5.0)
    assert late.status is Status.FAILED
    assert "7.5 s" in late.summary


def test_one_award_per_stored_order_is_ok() -> None:
    assert awarded_check(AwardFigures(10, 10), outbox(10), SETTLED).status is Status.OK


def test_an_order_awarded_twice_fails_whatever_is_in_flight() -> None:
    check = awarded_check(AwardFigures(11, 10), outbox(12), InFlight(consumer_backlog=2, dead_letters=0))
    assert check.status is Status.FAILED
    assert check.summary == "1 award for orders already awarded"


def test_an_award_for_an_order_never_stored_fails() -> None:
    assert awarded_check(AwardFigures(11, 11), outbox(10), SETTLED).status is Status.FAILED


def test_fewer_awards_than_orders_is_catching_up_while_events_travel_or_wait_in_dead_letters() -> None:
    assert awarded_check(AwardFigures(8, 8), outbox(10, pending=2), SETTLED).status is Status.CATCHING_UP
    assert awarded_check(AwardFigures(8, 8), outbox(10), InFlight(2, 0)).status is Status.CATCHING_UP
    parked = awarded_check(AwardFigures(8, 8), outbox(10), InFlight(0, 2))
    assert parked.status is Status.CATCHING_UP
    assert "2 dead letters" in parked.summary


def test_fewer_awards_than_orders_with_nothing_on_its_way_fails() -> None:
    check = awarded_check(AwardFigures(8, 8), outbox(10), SETTLED)
    assert check.status is Status.FAILED
    assert check.summary.startswith("2 orders not awarded yet")


def test_the_overall_status_is_the_worst_check() -> None:
    ok, catching_up, failed = (Check("x", status, "") for status in (Status.OK, Status.CATCHING_UP, Status.FAILED))
    assert overall([ok, ok]) is Status.OK
    assert overall([ok, catching_up]) is Status.CATCHING_UP
    assert overall([catching_up, failed, ok]) is Status.FAILED
