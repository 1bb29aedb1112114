"""How the loyalty consumer treats a failed event: the one place that decides between
"dead-letter it now" and "retry it later", and how long "later" is.

- Permanent: the message itself is bad (not a CloudEvent, an unknown ce-type or version, a
  payload that is not JSON or fails validation). Retrying cannot help: dead-letter at once.
- Anything else is retried with exponential backoff and jitter until max_deliver is spent, then
  dead-lettered as exhausted. That covers the expected case, a database that is down or slow
  (`is_dependency_failure`), and also a bug nobody foresaw: such an error is never lost, it
  ends up in DEAD_LETTERS with its text after a few tries."""

import random

import asyncpg
import sqlalchemy.exc
from pydantic import ValidationError

from orderflow_contracts.cloudevents import MalformedEvent

PERMANENT_ERRORS: tuple[type[Exception], ...] = (MalformedEvent, ValidationError)

DEPENDENCY_FAILURES: tuple[type[Exception], ...] = (
    OSError,  # connection refused or reset
    TimeoutError,  # our own bound on the transaction (asyncio.timeout), or a driver timeout
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection became free in time
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,  # the server is starting up or shutting down
    asyncpg.InterfaceError,
)


def is_permanent(error: Exception) -> bool:
    return isinstance(error, PERMANENT_ERRORS)


def is_dependency_failure(error: Exception) -> bool:
    """The database (or the network to it) failed, not our code: worth a retry, not a traceback."""
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, DEPENDENCY_FAILURES)


def describe(error: Exception) -> str:
    """One line naming the error, for logs and the dead letter's error header."""
    if isinstance(error, ValidationError):
        problems = "; ".join(
            f"{'.'.join(map(str, problem['loc'])) or 'body'}: {problem['msg']}"
            for problem in error.errors(include_url=False)
        )
        return f"invalid {error.title} payload: {problems}"
    return f"{type(error).__name__}: {error}"


def retry_delay(deliveries: int, base_seconds: float, max_seconds: float) -> float:
    """Exponential backoff with "equal jitter": at least half of the exponential step, so retries
    of many messages that failed together spread out instead of arriving in lock-step."""
    step = min(max_seconds, base_seconds * 2.0 ** max(deliveries - 1, 0))
    return step / 2 + random.uniform(0, step / 2)
