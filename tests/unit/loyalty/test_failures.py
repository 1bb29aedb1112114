"""The classification that decides between dead-letter-now and retry-later, and the retry delays."""

import asyncpg
import pytest
import sqlalchemy.exc
from pydantic import ValidationError

from loyalty.failures import describe, is_dependency_failure, is_permanent, retry_delay
from orderflow_contracts.cloudevents import MalformedEvent
from orderflow_contracts.events import OrderCreatedV1


def validation_error() -> ValidationError:
    try:
        OrderCreatedV1.model_validate_json(b'{"total_cents": -1}')
    except ValidationError as error:
        return error
    raise AssertionError("the payload validated")


def database_down() -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


@pytest.mark.parametrize("error", [MalformedEvent("missing ce-id"), validation_error()], ids=type)
def test_a_bad_message_is_permanent(error: Exception) -> None:
    assert is_permanent(error)


@pytest.mark.parametrize(
    "error",
    [ConnectionRefusedError(), TimeoutError(), database_down(), asyncpg.CannotConnectNowError("starting up")],
    ids=type,
)
def test_a_database_outage_is_a_retryable_dependency_failure(error: Exception) -> None:
    assert not is_permanent(error)
    assert is_dependency_failure(error)


def test_an_unforeseen_error_is_retried_but_not_taken_for_an_outage() -> None:
    bug = KeyError("customer")

    assert not is_permanent(bug)
    assert not is_dependency_failure(bug)


@pytest.mark.parametrize("deliveries", range(1, 8))
def test_retry_delays_double_per_delivery_up_to_the_cap_with_jitter(deliveries: int) -> None:
    step = min(8.0, 0.5 * 2 ** (deliveries - 1))

    delays = [retry_delay(deliveries, base_seconds=0.5, max_seconds=8.0) for _ in range(50)]

    assert all(step / 2 <= delay <= step for delay in delays)
    assert len(set(delays)) > 1


def test_a_validation_error_is_described_on_one_line_naming_the_fields() -> None:
    text = describe(validation_error())

    assert "\n" not in text
    assert "total_cents" in text
    assert "order_id" in text
