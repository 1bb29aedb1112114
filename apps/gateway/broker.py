"""The gateway's NATS connection, for what reads JetStream: the live event feeds and the
dead-letter endpoints.

The gateway serves orders without NATS, so it never waits for it: the connection is made in the
background (orderflow_kit.nats.connect keeps trying, and reconnects forever once connected), and
only a request that needs the broker, while it is away, is refused: 503 DEPENDENCY_UNAVAILABLE.
A broker that does not answer a request in time is a 504 DEPENDENCY_TIMEOUT."""

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Final

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext

from gateway.problems import Problem
from orderflow_kit.nats import connect

log = structlog.get_logger()

CLIENT_NAME = "gateway"
# What an operation that needs the broker may answer besides its own: away (503), too slow (504).
BROKER_FAILURES: Final = (503, 504)

# What the broker being away, or without JetStream, looks like to a request.
_UNREACHABLE: tuple[type[Exception], ...] = (
    OSError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoRespondersError,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
    nats.js.errors.ServiceUnavailableError,
    # A stream not created yet: the services create them when they first connect.
    nats.js.errors.NotFoundError,
)


class Broker:
    """One NATS connection per gateway process, opened in the background."""

    def __init__(self, url: str, timeout_seconds: float) -> None:
        self._url = url
        self._timeout_seconds = timeout_seconds
        self._connection: Client | None = None
        self._connecting: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, url: str, timeout_seconds: float) -> "Broker":
        """Call inside the running event loop; returns at once."""
        broker = cls(url, timeout_seconds)
        broker._connecting = asyncio.create_task(broker._connect(), name="gateway-nats-connect")
        return broker

    async def _connect(self) -> None:
        try:
            self._connection = await connect(self._url, CLIENT_NAME)
        except Exception:  # not an outage (connect retries those forever): a set-up mistake
            log.exception("cannot connect to nats")
            return
        log.info("nats connected")

    async def jetstream(self) -> JetStreamContext:
        """The JetStream context; a 503 problem while the broker is away. Until the first
        connection is made (the gateway has just started) it waits for it, up to the timeout."""
        if self._connection is None and self._connecting is not None and not self._connecting.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._connecting), self._timeout_seconds)
        if self._connection is None or not self._connection.is_connected:
            raise broker_unavailable()
        return self._connection.jetstream(timeout=self._timeout_seconds)

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self._connection is not None:
            await self._connection.close()


def broker_unavailable() -> Problem:
    return Problem(503, "DEPENDENCY_UNAVAILABLE", "The event broker is unavailable; retry later.")


@contextlib.contextmanager
def broker_errors() -> Iterator[None]:
    """Answer the broker's failures during a request as the problems they are (503, 504)."""
    try:
        yield
    except nats.errors.TimeoutError:
        raise Problem(504, "DEPENDENCY_TIMEOUT", "The event broker did not answer in time; retry later.") from None
    except _UNREACHABLE:
        raise broker_unavailable() from None
