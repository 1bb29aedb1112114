"""The supervisor behind `make up` (and the chaos tests) restarts a service that dies, with a
growing pause while it keeps dying, and leaves a service stopped on purpose alone. Real
`python -m inventory` processes, wired as `make up` wires them."""

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc
import pytest

from inventory.main import MIGRATIONS
from orderflow_contracts.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from orderflow_devstack.infra import Infrastructure
from orderflow_devstack.processes import ServiceProcess, ServiceSpec, TopologyPorts, topology
from orderflow_devstack.supervision import RestartPolicy, Supervisor
from tests.support.databases import fresh_database
from tests.support.jetstream import delete_consumer, new_consumer_name
from tests.support.polling import eventually

# Short pauses keep the tests fast; the policy's arithmetic is unit-tested (tests/unit/supervision).
POLICY = RestartPolicy(first_delay=0.1, max_delay=1.0, stable_after=60.0)
START_WITHIN = 60.0  # a loaded 2-core machine takes seconds just to import a service


@pytest.fixture
async def inventory_spec(infra: Infrastructure) -> AsyncIterator[ServiceSpec]:
    """`python -m inventory` exactly as `make up` runs it, on free ports, with a database (no
    products until it first starts) and an OrderCreated consumer of its own, both removed at the
    end: a test asks for it before `supervised`, whose processes are then stopped first."""
    [spec] = [spec for spec in topology(infra, TopologyPorts.free(), log_format="json") if spec.name == "inventory"]
    consumer = new_consumer_name("inventory-supervision")
    async with fresh_database(infra.postgres_url, "supervision", MIGRATIONS) as database:
        own = {
            "ORDERFLOW_INVENTORY_DATABASE": database,
            "ORDERFLOW_INVENTORY_CONSUMER": consumer,
            "ORDERFLOW_INVENTORY_DELIVER_POLICY": "new",
        }
        yield dataclasses.replace(spec, env={**spec.env, **own})
    await delete_consumer(infra.nats_url, consumer)


@pytest.fixture
def reports() -> list[str]:
    """What the supervisor reported, line by line."""
    return []


@pytest.fixture
def supervisor(reports: list[str]) -> Supervisor:
    return Supervisor(POLICY, report=reports.append)


@pytest.fixture
def supervised(supervisor: Supervisor, tmp_path: Path) -> Iterator[Callable[[ServiceSpec], ServiceProcess]]:
    """Start a supervised service (its output in tmp_path); every one is stopped at the end."""
    started: list[ServiceProcess] = []

    def start(spec: ServiceSpec) -> ServiceProcess:
        service = supervisor.service(spec, (tmp_path / f"{spec.name}.log").open("w", encoding="utf-8"))
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
async def inventory(inventory_spec: ServiceSpec, supervised: Callable[[ServiceSpec], ServiceProcess]) -> ServiceProcess:
    """Inventory, supervised, once it serves."""
    service = supervised(inventory_spec)
    await eventually(lambda: serves(inventory_spec), within=START_WITHIN, what="inventory serving")
    return service


async def serves(spec: ServiceSpec) -> bool:
    return await asyncio.to_thread(spec.ready)


async def product_count(spec: ServiceSpec) -> int:
    async with grpc.aio.insecure_channel(spec.env["ORDERFLOW_INVENTORY_ADDR"]) as connection:
        stub = inventory_pb2_grpc.InventoryServiceStub(connection)
        response = await stub.ListProducts(inventory_pb2.ListProductsRequest(), timeout=5.0)
    return len(response.products)


def has_logged(service: ServiceProcess, event: str) -> bool:
    return any(json.loads(line).get("event") == event for line in service.tail(200) if line.startswith("{"))


async def never(condition: Callable[[], bool], *, for_seconds: float) -> None:
    """Fail if `condition` holds at any moment during the next `for_seconds`."""
    deadline = time.monotonic() + for_seconds
    while time.monotonic() < deadline:
        assert not condition()
        await asyncio.sleep(0.02)


async def test_a_sigkilled_service_is_restarted_and_serves_again(
    inventory: ServiceProcess, supervisor: Supervisor, reports: list[str]
) -> None:
    inventory.kill()

    [killed] = await eventually(lambda: supervisor.exits, what="the exit recorded")
    assert (killed.service, killed.cause, killed.restart_in) == (inventory, "killed by SIGKILL", POLICY.first_delay)
    await eventually(lambda: serves(inventory.spec), within=START_WITHIN, what="inventory serving again")
    assert await product_count(inventory.spec) > 0
    assert inventory.returncode is None  # the new process runs
    assert reports[0].startswith("inventory killed by SIGKILL after ")
    assert reports[0].endswith(f"restarting in {POLICY.first_delay:g}s")
    assert reports[1] == "inventory restarted"


async def test_a_service_stopped_on_purpose_stays_down(
    inventory: ServiceProcess, supervisor: Supervisor, reports: list[str]
) -> None:
    # Fully started: its consumer as well, which sets itself up after the server serves.
    await eventually(lambda: has_logged(inventory, "consuming"), within=START_WITHIN, what="inventory consuming")

    await asyncio.to_thread(inventory.stop)

    [stopped] = supervisor.exits
    assert (stopped.cause, stopped.restart_in) == ("exited with code 0", None)
    await never(lambda: inventory.returncode is None, for_seconds=5 * POLICY.first_delay)
    assert not await serves(inventory.spec)
    assert reports == []  # a stop is no news


async def test_the_pause_grows_while_a_service_keeps_dying(
    inventory_spec: ServiceSpec,
    supervised: Callable[[ServiceSpec], ServiceProcess],
    supervisor: Supervisor,
    reports: list[str],
    tmp_path: Path,
) -> None:
    """A catalog that is not JSON, and no products yet: inventory exits 1 on every start."""
    broken = tmp_path / "broken.json"
    broken.write_text("[{]")
    dying = dataclasses.replace(inventory_spec, env={**inventory_spec.env, "ORDERFLOW_CATALOG": str(broken)})

    supervised(dying)
    exits = await eventually(lambda: supervisor.exits, lambda exits: len(exits) >= 2, within=2 * START_WITHIN)

    first, second = exits[:2]
    assert (first.cause, second.cause) == ("exited with code 1", "exited with code 1")
    assert (first.restart_in, second.restart_in) == (0.1, 0.2)  # doubled (the cap: tests/unit/supervision)
    assert first.restart_in is not None
    started_again_at = second.exited_at - second.uptime
    assert started_again_at - first.exited_at >= first.restart_in  # the pause was kept
    assert reports[0].startswith("inventory exited with code 1 after ")
    assert "restarting in 0.1s; its last output:" in reports[0]
    assert f"catalog file {broken} is invalid" in reports[0]  # why it died, from its own last lines
    assert "restarting in 0.2s" in reports[2]  # after "inventory restarted"
