"""The hostile-input suite: the whole pipeline as processes, for schemathesis to attack through the
gateway (the gRPC and event tests run the services in-process, see their modules)."""

from collections.abc import Iterator

import pytest

from orderflow_devstack.infra import Infrastructure
from tests.support.pipeline import Pipeline, pytest_runtest_makereport, running_pipeline

__all__ = ["pipeline", "pytest_runtest_makereport"]

# SKU-1 is the example the OpenAPI document gives, so schemathesis' example phase places a real order.
CATALOG = [
    {"sku": "SKU-1", "name": "Example product", "price_cents": 1999, "stock": 1_000_000_000},
    {"sku": "HOSTILE-2", "name": "Another product", "price_cents": 1, "stock": 1_000_000_000},
]


@pytest.fixture(scope="session")
def pipeline(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with running_pipeline(infra, tmp_path_factory.mktemp("hostile"), CATALOG, prefix="hostile") as running:
        yield running
