"""The whole pipeline for end-to-end tests (tests/support/pipeline.py), with a catalog whose stock
is tiny where a test needs to run out, huge where it must not."""

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from orderflow_devstack.infra import Infrastructure
from tests.support.pipeline import Pipeline, pytest_runtest_makereport, running_pipeline

__all__ = ["pipeline", "pytest_runtest_makereport"]

CATALOG = [
    {"sku": "E2E-LIMITED", "name": "Limited edition print", "price_cents": 4900, "stock": 50},
    {"sku": "E2E-MUG", "name": "Enamel mug", "price_cents": 1250, "stock": 1_000_000},
    {"sku": "E2E-TEE", "name": "Organic tee", "price_cents": 2599, "stock": 1_000_000},
]

# Live event feeds send a heartbeat this often: short, for a test to see one soon.
HEARTBEAT_SECONDS = 0.5
ENV = {"ORDERFLOW_LIVE_EVENTS_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS)}


@pytest.fixture(scope="session")
def pipeline(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with running_pipeline(infra, tmp_path_factory.mktemp("e2e"), CATALOG, prefix="e2e", env=ENV) as running:
        yield running


@pytest.fixture
async def api(pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the pipeline's gateway, over real HTTP, that many requests may use at once."""
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=pipeline.gateway_url, timeout=30, limits=limits, trust_env=False) as client:
        yield client
