"""What is transient and what is permanent: the one place that decides, for every JetStream
consumer (orderflow_kit.jetstream_consumer) and every gRPC call between orderflow services
(orderflow_kit.grpc_client).

A consumer's failed message is one of three kinds (`classify`):

- PERMANENT: the message itself cannot be processed, now or later. It is not a CloudEvent, has an
  unknown ce-type or version, a payload that is not JSON or fails validation (MalformedEvent,
  pydantic's ValidationError), or the handler decided that retrying cannot change the answer
  (it raised a `PermanentFailure`). Dead-lettered at once, after one delivery.
- DEPENDENCY: a database, or the network to it, failed: connection refused or reset, a timeout,
  PostgreSQL starting up or shutting down; or PostgreSQL rolled the transaction back because it
  lost a race with another (a deadlock, a serialization failure: `is_transaction_conflict`), which
  the same work run again resolves. NAKed with exponential backoff and jitter
  (`retry_delay`) until max_deliver, then dead-lettered as exhausted. Logged without a traceback:
  an outage is expected, not a bug.
- UNFORESEEN: anything else, that is a bug. Retried and dead-lettered like DEPENDENCY, so it is
  never lost and never dead-lettered at the first try, but logged with its traceback.

`after_failure` is that rule as the consumer applies it to one failed delivery: retry later, or
give up (and dead-letter, orderflow_kit.dead_letters) with the reason.

A gRPC call is retried (by the channel, `grpc_client.channel`) only when all of these hold:

- its status is in RETRYABLE_STATUS_CODES: UNAVAILABLE only. The server was not reached, or
  refused before doing anything. DEADLINE_EXCEEDED is not retried: the caller's time is spent,
  and the server may still be working on it. Refusals (INVALID_ARGUMENT, NOT_FOUND,
  FAILED_PRECONDITION, ...) give the same answer again.
- its method is in IDEMPOTENT_METHODS: doing it twice has the effect of doing it once. Every
  method of orderflow's contracts is in exactly one of IDEMPOTENT_METHODS and
  NOT_IDEMPOTENT_METHODS (a unit test checks it), so a new method forces a decision.
- there is time left: the call's deadline (timeout=) covers every attempt and every backoff; a
  retry never extends it.
"""

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import asyncpg
import sqlalchemy.exc
from pydantic import ValidationError

from orderflow_contracts.cloudevents import MalformedEvent
from orderflow_kit.dead_letters import Reason

if TYPE_CHECKING:
    from orderflow_kit.consumer_settings import ConsumerSettings


class Failure(StrEnum):
    PERMANENT = "permanent"
    DEPENDENCY = "dependency"
    UNFORESEEN = "unforeseen"


class PermanentFailure(Exception):
    """Raised by a handler when the message can never succeed as it is (the order it names does
    not exist here, say): it is dead-lettered at once, with this error's text as the reason."""


PERMANENT_ERRORS: tuple[type[Exception], ...] = (MalformedEvent, ValidationError, PermanentFailure)

DEPENDENCY_FAILURES: tuple[type[Exception], ...] = (
    OSError,  # connection refused or reset
    TimeoutError,  # the consumer's bound on the handler (asyncio.timeout), or a driver timeout
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection became free in time
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,  # the server is starting up or shutting down
    asyncpg.InterfaceError,
)


# SQLSTATEs of a transaction PostgreSQL rolled back because it lost a race: deadlock_detected and
# serialization_failure. Nothing of it was written, and running it again may well succeed.
TRANSACTION_CONFLICTS = frozenset({"40P01", "40001"})


def is_transaction_conflict(error: BaseException) -> bool:
    """A deadlock or a serialization failure (from asyncpg, or wrapped by SQLAlchemy)."""
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        return getattr(error.orig, "sqlstate", None) in TRANSACTION_CONFLICTS
    return getattr(error, "sqlstate", None) in TRANSACTION_CONFLICTS


def classify(error: Exception) -> Failure:
    if isinstance(error, PERMANENT_ERRORS):
        return Failure.PERMANENT
    if is_dependency_failure(error):
        return Failure.DEPENDENCY
    return Failure.UNFORESEEN


def is_dependency_failure(error: Exception) -> bool:
    """The database (or the network to it) failed, not our code: worth a retry, not a traceback."""
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, DEPENDENCY_FAILURES) or is_transaction_conflict(error)


def error_class(error: BaseException) -> str:
    """The exception's class name (`OperationalError`, `ValidationError`): what to group failures by."""
    return type(error).__qualname__


def describe(error: Exception) -> str:
    """One line naming the error, for logs and the dead letter's error header."""
    if isinstance(error, ValidationError):
        problems = "; ".join(
            f"{'.'.join(map(str, problem['loc'])) or 'body'}: {problem['msg']}"
            for problem in error.errors(include_url=False)
        )
        return f"invalid {error.title} payload: {problems}"
    return f"{error_class(error)}: {error}"


def retry_delay(deliveries: int, base_seconds: float, max_seconds: float) -> float:
    """Exponential backoff with "equal jitter": at least half of the exponential step, so retries
    of many messages that failed together spread out instead of arriving in lock-step."""
    step = min(max_seconds, base_seconds * 2.0 ** max(deliveries - 1, 0))
    return step / 2 + random.uniform(0, step / 2)


@dataclass(frozen=True)
class RetryLater:
    """NAK the message: the broker delivers it again after `delay_seconds`."""

    delay_seconds: float
    failure: Failure  # DEPENDENCY or UNFORESEEN: only a bug deserves a traceback in the log


@dataclass(frozen=True)
class GiveUp:
    """Dead-letter the message, then ack it: it no longer holds up the ones behind it."""

    reason: Reason
    error: str  # one line, for the dead letter's error header


def after_failure(error: Exception, deliveries: int, settings: "ConsumerSettings") -> RetryLater | GiveUp:
    """What a consumer does with a message that failed on its `deliveries`-th delivery: a permanent
    failure is given up at once; any other is retried later, until its last delivery (max_deliver)."""
    failure = classify(error)
    if failure is Failure.PERMANENT:
        return GiveUp(Reason.PERMANENT, describe(error))
    if deliveries < settings.max_deliver:
        return RetryLater(retry_delay(deliveries, settings.retry_base_seconds, settings.retry_max_seconds), failure)
    return GiveUp(Reason.EXHAUSTED, f"max_deliver ({settings.max_deliver}) exhausted; last error: {describe(error)}")


# gRPC: which status codes and which methods a channel may retry (see the module docstring).
RETRYABLE_STATUS_CODES = ("UNAVAILABLE",)

IDEMPOTENT_METHODS = frozenset(
    {
        "orderflow.inventory.v1.InventoryService/ListProducts",
        "orderflow.inventory.v1.InventoryService/GetProduct",
        # Idempotent per order id: a repeat returns the stored reservation and takes nothing.
        "orderflow.inventory.v1.InventoryService/ReserveStock",
        # Idempotent per order id: a repeat finds nothing left to release.
        "orderflow.inventory.v1.InventoryService/ReleaseStock",
        "orderflow.orders.v1.OrderService/GetOrder",
        "orderflow.orders.v1.OrderService/ListOrders",
        "orderflow.loyalty.v1.LoyaltyService/GetBalance",
        # Reads only. (gRPC retries a streaming call only until its first response arrives.)
        "orderflow.inventory.v1.InventoryService/WatchStock",
        # Every request carries a client_request_id: a repeated stream answers the orders it placed.
        "orderflow.orders.v1.OrderService/PlaceOrders",
        # Reads for reconciliation.
        "orderflow.inventory.v1.InventoryService/CheckStockConservation",
        "orderflow.orders.v1.OrderService/GetOutboxStatus",
        "orderflow.loyalty.v1.LoyaltyService/CountAwards",
    }
)

NOT_IDEMPOTENT_METHODS = frozenset(
    {
        # Each call creates a new order (the service picks its id): a repeat would order twice.
        # Only a request with a client_request_id is safe to repeat, and the channel cannot tell.
        # A repeated stream adds its units again (inventory.restocking).
        "orderflow.inventory.v1.InventoryService/RestockStream",
        "orderflow.orders.v1.OrderService/CreateOrder",
    }
)
