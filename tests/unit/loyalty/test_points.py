import pytest

from loyalty.awarding_points import points_for


@pytest.mark.parametrize(("total_cents", "points"), [(0, 0), (99, 0), (100, 1), (2198, 21), (123_456_789, 1_234_567)])
def test_one_point_per_whole_currency_unit(total_cents: int, points: int) -> None:
    assert points_for(total_cents) == points
