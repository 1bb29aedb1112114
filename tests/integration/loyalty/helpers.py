"""What the loyalty integration tests share: publishing events (tests.support.events), the consumer
run in-process, and readers of the broker's and the database's state. Every test has its own durable consumer
(deliver policy NEW), so it only sees what it publishes on the shared ORDERS stream, and its own
dead-letter subject."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from nats.errors import Error as NatsError
from nats.js import JetStreamContext, api
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty.awarding_points import CustomerBalance, get_balance
from loyalty.consumer import order_events
from loyalty.settings import LoyaltySettings
from orderflow_contracts.cloudevents import CloudEvent
from orderflow_contracts.streams import ORDERS_STREAM
from orderflow_kit.dead_letters import DeadLetter, list_dead_letters
from orderflow_kit.jetstream_consumer import consume
from tests.support.databases import scalar
from tests.support.events import publish
from tests.support.jetstream import consumer_exists
from tests.support.outages import Outage
from tests.support.polling import eventually

TIMEOUT = 15.0


def new_customer_id() -> str:
    return f"cust-{uuid.uuid4().hex[:12]}"


async def balance(engine: AsyncEngine, customer_id: str) -> CustomerBalance:
    return await get_balance(engine, customer_id)


async def assert_awarded_once(engine: AsyncEngine, customer_id: str, event_id: str, points: int) -> None:
    """The customer holds `points` from one order, and the event has one ledger entry: its award."""
    awarded = await balance(engine, customer_id)
    assert (awarded.points, awarded.orders_awarded) == (points, 1)
    assert await rows(engine, "ledger", event_id) == 1


async def rows(engine: AsyncEngine, table: str, event_id: str) -> int:
    count = await scalar(engine, f"SELECT count(*) FROM {table} WHERE event_id = :id", id=event_id)
    assert isinstance(count, int)
    return count


async def dead_letters(js: JetStreamContext, consumer: str) -> list[DeadLetter]:
    return await list_dead_letters(js, subject=f"dlq.{consumer}.>")


async def consumer_info(js: JetStreamContext, consumer: str) -> api.ConsumerInfo:
    info: api.ConsumerInfo = await js.consumer_info(ORDERS_STREAM, consumer)
    return info


async def handler_waits_on_a_lock(engine: AsyncEngine) -> bool:
    """Some session of the test database is blocked on a row lock (the consumer's dedupe insert)."""
    waiting = await scalar(
        engine, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return bool(waiting)


async def publish_when_reconnected(js: JetStreamContext, event: CloudEvent) -> api.PubAck:
    """Publish once the test's own connection is back after a broker restart."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            return await publish(js, event)
        except (NatsError, OSError):
            assert time.monotonic() < deadline, "could not publish after the broker restart"
            await asyncio.sleep(0.1)


@asynccontextmanager
async def consuming(settings: LoyaltySettings, engine: AsyncEngine, js: JetStreamContext) -> AsyncIterator[None]:
    """Run the consumer in this event loop until the block ends (then stop it as SIGTERM would)."""
    task = asyncio.create_task(consume(order_events(settings, engine), settings))

    async def started() -> bool:
        if task.done():
            task.result()
            raise AssertionError("the consumer stopped before it started")
        return await consumer_exists(js, settings.order_events.consumer)

    try:
        await eventually(started)
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


class DatabaseOutage(Outage):
    """A PostgreSQL outage the test controls: `url` reaches the session's server only after `end()`."""

    def __init__(self, server_url: str) -> None:
        server = make_url(server_url.replace("postgres://", "postgresql://", 1))
        super().__init__(server.host or "127.0.0.1", server.port or 5432)
        self.url = server.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)
