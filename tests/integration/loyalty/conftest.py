import uuid
from collections.abc import AsyncIterator
from contextlib import suppress

import nats
import pytest
import pytest_asyncio
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from sqlalchemy.ext.asyncio import AsyncEngine

from loyalty.main import MIGRATIONS
from loyalty.settings import LoyaltySettings
from orderflow_contracts.streams import ORDERS_STREAM
from orderflow_kit.infra import Infrastructure, free_port
from orderflow_kit.nats import ensure_streams
from tests.support.databases import database_engine, fresh_database


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def database(infra: Infrastructure) -> AsyncIterator[str]:
    """One fresh, migrated database per test module (tests use fresh customer and event ids)."""
    async with fresh_database(infra.postgres_url, "loyalty", MIGRATIONS) as name:
        yield name


@pytest.fixture
def settings(infra: Infrastructure, database: str) -> LoyaltySettings:
    """Short timeouts and retries; a durable consumer of the test's own that only sees new events."""
    return LoyaltySettings(
        nats_url=infra.nats_url,
        postgres_url=infra.postgres_url,
        loyalty_database=database,
        loyalty_consumer=f"loyalty-test-{uuid.uuid4().hex[:10]}",
        loyalty_deliver_policy="new",
        loyalty_max_deliver=3,
        loyalty_handler_timeout_seconds=1.0,
        loyalty_ack_wait_seconds=2.5,
        loyalty_retry_base_seconds=0.05,
        loyalty_retry_max_seconds=0.2,
        listen_host="127.0.0.1",
        loyalty_port=free_port(),
        log_format="json",
        shutdown_grace_seconds=5.0,
    )


@pytest.fixture
async def engine(infra: Infrastructure, database: str) -> AsyncIterator[AsyncEngine]:
    async with database_engine(infra.postgres_url, database) as engine:
        yield engine


@pytest.fixture
async def js(infra: Infrastructure, settings: LoyaltySettings) -> AsyncIterator[JetStreamContext]:
    """The test's own NATS connection; removes the test's durable consumer at the end."""
    connection = await nats.connect(infra.nats_url)
    jetstream = connection.jetstream()
    await ensure_streams(jetstream)
    yield jetstream
    with suppress(NotFoundError):
        await jetstream.delete_consumer(ORDERS_STREAM, settings.loyalty_consumer)
    await connection.close()
