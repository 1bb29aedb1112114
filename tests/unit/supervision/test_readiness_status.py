"""How the readiness watcher turns its dependencies' answers into health statuses (the probes of
real servers are proven in tests/integration/supervision/test_readiness.py)."""

import asyncio

import pytest
import structlog

from orderflow_kit import readiness
from orderflow_kit.readiness import NOT_SERVING, SERVING, Dependency, Readiness

SERVICES = ["", "orderflow.test.v1.TestService"]


class HealthStatuses:
    """Stands in for grpc_health's HealthServicer: it only stores what it is told."""

    def __init__(self) -> None:
        self.statuses: dict[str, int] = {}

    async def set(self, service: str, status: int) -> None:
        self.statuses[service] = status


class Switch:
    """A dependency's probe that answers or fails as the test says."""

    def __init__(self) -> None:
        self.up = True

    async def probe(self) -> None:
        if not self.up:
            raise ConnectionRefusedError("refused")


async def test_a_required_dependency_that_is_down_makes_the_server_and_its_services_not_serving() -> None:
    health, database = HealthStatuses(), Switch()
    watcher = Readiness(health, SERVICES, [Dependency("postgres", database.probe)])

    database.up = False
    assert await watcher.check() is False
    assert health.statuses == {"": NOT_SERVING, SERVICES[1]: NOT_SERVING, "dependency/postgres": NOT_SERVING}

    database.up = True
    assert await watcher.check() is True
    assert health.statuses == {"": SERVING, SERVICES[1]: SERVING, "dependency/postgres": SERVING}


async def test_a_service_whose_consumer_has_not_subscribed_yet_is_not_serving() -> None:
    health, subscribed = HealthStatuses(), asyncio.Event()
    watcher = Readiness(health, SERVICES, [readiness.consumer_started(subscribed)])

    assert await watcher.check() is False
    assert health.statuses["dependency/consumer"] == NOT_SERVING

    subscribed.set()
    assert await watcher.check() is True
    assert health.statuses == {"": SERVING, SERVICES[1]: SERVING, "dependency/consumer": SERVING}


async def test_a_dependency_that_is_not_required_is_reported_without_changing_the_status() -> None:
    health, broker = HealthStatuses(), Switch()
    watcher = Readiness(health, SERVICES, [Dependency("nats", broker.probe, required=False)])

    broker.up = False

    assert await watcher.check() is True
    assert health.statuses == {"": SERVING, SERVICES[1]: SERVING, "dependency/nats": NOT_SERVING}


async def test_a_probe_that_does_not_answer_in_time_counts_as_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readiness, "PROBE_TIMEOUT_SECONDS", 0.05)
    health = HealthStatuses()

    async def hangs() -> None:
        await asyncio.Event().wait()

    assert await Readiness(health, SERVICES, [Dependency("postgres", hangs)]).check() is False
    assert health.statuses["dependency/postgres"] == NOT_SERVING


async def test_without_dependencies_the_server_is_serving() -> None:
    health = HealthStatuses()

    assert await Readiness(health, SERVICES, []).check() is True
    assert health.statuses == {"": SERVING, SERVICES[1]: SERVING}


async def test_each_change_is_logged_once() -> None:
    health, database = HealthStatuses(), Switch()
    watcher = Readiness(health, SERVICES, [Dependency("postgres", database.probe)])

    with structlog.testing.capture_logs() as logs:
        database.up = False
        await watcher.check()
        await watcher.check()
        database.up = True
        await watcher.check()
        await watcher.check()

    assert [(line["event"], line["dependency"], line["serving"]) for line in logs] == [
        ("dependency down", "postgres", False),
        ("dependency back", "postgres", True),
    ]
    assert logs[0]["error"] == "ConnectionRefusedError: refused"
