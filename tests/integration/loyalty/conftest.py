from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from nats.js import JetStreamContext

from loyalty.main import MIGRATIONS
from loyalty.settings import LoyaltyConsumer, LoyaltySettings
from orderflow_devstack.infra import Infrastructure, free_port
from tests.support.databases import fresh_database
from tests.support.jetstream import impatient, jetstream
from tests.support.services import session_settings


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def database(infra: Infrastructure) -> AsyncIterator[str]:
    """One fresh, migrated database per test module (tests use fresh customer and event ids)."""
    async with fresh_database(infra.postgres_url, "loyalty", MIGRATIONS) as name:
        yield name


@pytest.fixture
def settings(infra: Infrastructure, database: str) -> LoyaltySettings:
    """Short timeouts and retries; a durable consumer of the test's own that only sees new events."""
    return LoyaltySettings(
        **session_settings(infra, shutdown_grace_seconds=5.0),
        loyalty_database=database,
        order_events=impatient(LoyaltyConsumer, "loyalty"),
        loyalty_port=free_port(),
    )


@pytest.fixture
async def js(infra: Infrastructure, settings: LoyaltySettings) -> AsyncIterator[JetStreamContext]:
    """The test's own NATS connection; removes the test's durable consumer at the end."""
    async with jetstream(infra.nats_url, removing=settings.order_events.consumer) as connected:
        yield connected
