"""Fixtures shared by every test suite: one set of real servers for the whole session."""

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orderflow_devstack.infra import Infrastructure, provide_infrastructure


@pytest.fixture(scope="session")
def infra_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Data and logs of the embedded servers (look here when a server misbehaves).

    As root, the embedded PostgreSQL runs as `nobody`, who cannot enter pytest's private (0700)
    temp root; root gets a temp dir that others may traverse, removed at the end.
    """
    if os.geteuid() != 0:
        yield tmp_path_factory.mktemp("infra")
        return
    path = Path(tempfile.mkdtemp(prefix="orderflow-infra-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def infra(infra_state_dir: Path) -> Iterator[Infrastructure]:
    """NATS (JetStream), PostgreSQL and Redis: from ORDERFLOW_*_URL, else Docker, else embedded."""
    with provide_infrastructure(infra_state_dir) as infrastructure, pytest.MonkeyPatch.context() as environment:
        # Settings default to the standard ports, where this machine runs servers of its own: a
        # service or setting a test forgets to point at these servers still lands on them.
        environment.setenv("ORDERFLOW_NATS_URL", infrastructure.nats_url)
        environment.setenv("ORDERFLOW_POSTGRES_URL", infrastructure.postgres_url)
        environment.setenv("ORDERFLOW_REDIS_URL", infrastructure.redis_url)
        # Likewise the metrics ports (9151-9153 by default, which `make up` or another run may hold):
        # a service a test starts serves its metrics on a free port unless the test names one.
        for service in ("INVENTORY", "ORDERS", "LOYALTY"):
            environment.setenv(f"ORDERFLOW_{service}_METRICS_PORT", "0")
        yield infrastructure
