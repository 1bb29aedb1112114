"""The one classification of failures (orderflow_kit.failures): what a consumer dead-letters at
once, what it retries, how long it waits, when it gives up, and which gRPC calls a channel may retry."""

import asyncpg
import pytest
import sqlalchemy.exc
from pydantic import ValidationError

from orderflow_contracts.cloudevents import MalformedEvent
from orderflow_contracts.events import OrderCreatedV1
from orderflow_contracts.inventory.v1 import inventory_pb2
from orderflow_contracts.loyalty.v1 import loyalty_pb2
from orderflow_contracts.orders.v1 import orders_pb2
from orderflow_kit.consumer_settings import ConsumerSettings
from orderflow_kit.dead_letters import Reason
from orderflow_kit.failures import (
    IDEMPOTENT_METHODS,
    NOT_IDEMPOTENT_METHODS,
    Failure,
    GiveUp,
    PermanentFailure,
    RetryLater,
    after_failure,
    classify,
    describe,
    error_class,
    is_dependency_failure,
    retry_delay,
)


def validation_error() -> ValidationError:
    try:
        OrderCreatedV1.model_validate_json(b'{"total_cents": -1}')
    except ValidationError as error:
        return error
    raise AssertionError("the payload validated")


def database_down() -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


class FromPostgres(Exception):
    """What asyncpg's errors look like through SQLAlchemy's adapter: a `sqlstate`."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def rolled_back(sqlstate: str) -> sqlalchemy.exc.DBAPIError:
    return sqlalchemy.exc.DBAPIError("UPDATE products", {}, FromPostgres(sqlstate))


def connection_invalidated() -> sqlalchemy.exc.DBAPIError:
    return sqlalchemy.exc.DBAPIError("SELECT 1", {}, Exception("terminated"), connection_invalidated=True)


CLASSIFICATION: list[tuple[Exception, Failure]] = [
    # The message itself is bad: dead-lettered at once.
    (MalformedEvent("missing CloudEvents headers: ce-id"), Failure.PERMANENT),
    (validation_error(), Failure.PERMANENT),
    (PermanentFailure("no reservation for order 1"), Failure.PERMANENT),
    # A dependency failed: retried with backoff, then dead-lettered as exhausted; no traceback.
    (ConnectionRefusedError(), Failure.DEPENDENCY),
    (ConnectionResetError(), Failure.DEPENDENCY),
    (TimeoutError(), Failure.DEPENDENCY),
    (database_down(), Failure.DEPENDENCY),
    (connection_invalidated(), Failure.DEPENDENCY),
    (sqlalchemy.exc.TimeoutError("QueuePool limit reached"), Failure.DEPENDENCY),
    (asyncpg.CannotConnectNowError("the database system is starting up"), Failure.DEPENDENCY),
    (asyncpg.ConnectionDoesNotExistError("connection was closed"), Failure.DEPENDENCY),
    # The transaction lost a race and was rolled back: running it again resolves it.
    (rolled_back("40P01"), Failure.DEPENDENCY),  # deadlock_detected
    (rolled_back("40001"), Failure.DEPENDENCY),  # serialization_failure
    (asyncpg.DeadlockDetectedError("deadlock detected"), Failure.DEPENDENCY),
    # A bug: retried like an outage (never lost), but logged with its traceback.
    (KeyError("customer"), Failure.UNFORESEEN),
    (ZeroDivisionError(), Failure.UNFORESEEN),
    (sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key")), Failure.UNFORESEEN),
    (rolled_back("22003"), Failure.UNFORESEEN),  # numeric_value_out_of_range: running it again changes nothing
]


@pytest.mark.parametrize(("error", "expected"), CLASSIFICATION, ids=lambda value: type(value).__name__)
def test_each_failure_is_classified_as_the_table_says(error: Exception, expected: Failure) -> None:
    assert classify(error) is expected
    assert is_dependency_failure(error) == (expected is Failure.DEPENDENCY)


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


def test_the_error_class_is_the_exceptions_class_name() -> None:
    assert error_class(database_down()) == "OperationalError"
    assert error_class(validation_error()) == "ValidationError"
    assert describe(ConnectionRefusedError("refused")) == "ConnectionRefusedError: refused"


class Consumer(ConsumerSettings):
    stream = "ORDERS"
    subject = "orders.created"


CONSUMER = Consumer(consumer="c", max_deliver=3, retry_base_seconds=1.0, retry_max_seconds=60.0)


def test_a_permanent_failure_is_given_up_at_its_first_delivery() -> None:
    assert after_failure(validation_error(), 1, CONSUMER) == GiveUp(Reason.PERMANENT, describe(validation_error()))


@pytest.mark.parametrize("error", [database_down(), RuntimeError("a bug")], ids=["dependency", "unforeseen"])
def test_any_other_failure_is_retried_until_its_last_delivery_then_given_up_as_exhausted(error: Exception) -> None:
    first, second = after_failure(error, 1, CONSUMER), after_failure(error, 2, CONSUMER)

    assert isinstance(first, RetryLater)
    assert 0.5 <= first.delay_seconds <= 1.0
    assert isinstance(second, RetryLater)
    assert 1.0 <= second.delay_seconds <= 2.0
    assert first.failure is second.failure is classify(error)
    assert after_failure(error, 3, CONSUMER) == GiveUp(
        Reason.EXHAUSTED, f"max_deliver (3) exhausted; last error: {describe(error)}"
    )


def contract_methods() -> set[str]:
    return {
        f"{service.full_name}/{method.name}"
        for module in (inventory_pb2, orders_pb2, loyalty_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }


def test_every_rpc_of_the_contracts_is_declared_idempotent_or_not_exactly_once() -> None:
    """A new method cannot slip into the retry policy (or out of it) without a decision."""
    assert IDEMPOTENT_METHODS.isdisjoint(NOT_IDEMPOTENT_METHODS)
    assert contract_methods() == IDEMPOTENT_METHODS | NOT_IDEMPOTENT_METHODS


def test_creating_an_order_and_restocking_are_not_idempotent_and_reserving_and_releasing_stock_are() -> None:
    assert {
        "orderflow.orders.v1.OrderService/CreateOrder",
        "orderflow.inventory.v1.InventoryService/RestockStream",
    } <= NOT_IDEMPOTENT_METHODS
    assert {
        "orderflow.inventory.v1.InventoryService/ReserveStock",
        "orderflow.inventory.v1.InventoryService/ReleaseStock",
    } <= IDEMPOTENT_METHODS
