"""The order page's journey from live events: created, published, stock confirmed and points
awarded in whichever order inventory and loyalty announce them, each step once, with its time."""

from datetime import UTC, datetime, timedelta

from web.journey import AWARDED, CREATED, PUBLISHED, STOCK_CONFIRMED, Journey

CREATED_AT = datetime(2026, 11, 20, 10, 15, tzinfo=UTC)


def at(milliseconds: int) -> str:
    return (CREATED_AT + timedelta(milliseconds=milliseconds)).isoformat()


def test_the_steps_arrive_in_any_order_each_once_with_its_time_after_the_order() -> None:
    journey = Journey(CREATED_AT)
    assert [(step.key, step.done) for step in journey.steps()] == [
        (CREATED, True),
        (PUBLISHED, False),
        (STOCK_CONFIRMED, False),
        (AWARDED, False),
    ]
    assert journey.apply("order.created", {"published_at": at(8)})
    assert journey.apply("points.awarded", {"points": 25, "balance_after": 40, "awarded_at": at(1400)})
    assert not journey.finished
    assert journey.apply("stock.confirmed", {"late": False, "confirmed_at": at(120)})
    assert not journey.apply("stock.confirmed", {"late": False, "confirmed_at": at(900)}), "a copy changes nothing"
    assert journey.finished

    steps = {step.key: step for step in journey.steps()}
    assert [step.key for step in journey.steps()] == [CREATED, PUBLISHED, STOCK_CONFIRMED, AWARDED]
    assert all(step.done for step in steps.values())
    assert journey.after_order(steps[STOCK_CONFIRMED]) == "+120 ms"
    assert journey.after_order(steps[AWARDED]) == "+1.4 s"


def test_a_late_confirmation_says_so() -> None:
    journey = Journey(CREATED_AT)
    journey.apply("stock.confirmed", {"late": True, "confirmed_at": at(5000)})
    confirmed = next(step for step in journey.steps() if step.key == STOCK_CONFIRMED)
    assert "expired" in confirmed.note
