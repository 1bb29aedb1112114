"""The fault-injection suite. One pipeline (the four services as supervised processes, orders
and loyalty with two replicas each, against real servers) goes through every case in turn: a
steady stream of orders, something broken in the middle, then a reconciliation of everything
accepted so far (harness.py). The invariants are cumulative, so each case also re-checks the
ones before it. Part of `make test`."""

import asyncio
import dataclasses
import os
import signal
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orderflow_devstack.infra import Infrastructure, ManagedServer, NatsServer
from orderflow_devstack.processes import ServiceProcess
from orderflow_devstack.supervision import RestartPolicy, Supervisor
from tests.chaos.harness import (
    CATALOG,
    RECONCILIATION,
    Answer,
    Reconciliation,
    RecordProperty,
    accepted_orders,
    reconcile,
    steady_orders,
)
from tests.support.pipeline import Pipeline, running_pipeline
from tests.support.polling import eventually

pytestmark = pytest.mark.chaos

# The broker's duplicate window: the NATS outages below last less, then longer, than this.
DUPLICATE_WINDOW_SECONDS = 3.0

# Short enough that a reservation orphaned by a crash comes back within the case.
CHAOS_SETTINGS = {
    "ORDERFLOW_NATS_DUPLICATE_WINDOW_SECONDS": str(DUPLICATE_WINDOW_SECONDS),
    "ORDERFLOW_RESERVATION_TTL_SECONDS": "4",
    "ORDERFLOW_RESERVATION_SWEEP_SECONDS": "0.5",
    "ORDERFLOW_INVENTORY_RETRY_BASE_SECONDS": "0.2",
    "ORDERFLOW_INVENTORY_RETRY_MAX_SECONDS": "1",
    "ORDERFLOW_OUTBOX_RETRY_MAX_SECONDS": "0.5",
    "ORDERFLOW_SHUTDOWN_GRACE_SECONDS": "2",
    # Consumers retry a database outage longer than any case's: only poison is dead-lettered.
    "ORDERFLOW_LOYALTY_MAX_DELIVER": "30",
    "ORDERFLOW_INVENTORY_MAX_DELIVER": "30",
}


@dataclass
class Chaos:
    pipeline: Pipeline
    supervisor: Supervisor
    # The fault flags file every service re-reads (orderflow_kit.faults).
    faults: Path
    accepted: set[str] = field(default_factory=set)
    counted: Reconciliation = field(default_factory=lambda: Reconciliation(set()))


@pytest.fixture(scope="module")
def chaos_infra(infra: Infrastructure, infra_state_dir: Path) -> Iterator[Infrastructure]:
    """The session's PostgreSQL and Redis, and a NATS of the suite's own: its streams get a
    duplicate window of seconds, which no other suite should meet."""
    nats_server = NatsServer(infra_state_dir / "chaos")
    nats_server.start()
    try:
        yield dataclasses.replace(infra, nats_url=nats_server.url, nats=nats_server)
    finally:
        nats_server.close()


@pytest.fixture(scope="module")
def chaos(chaos_infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    work = tmp_path_factory.mktemp("chaos")
    faults = work / "faults"
    faults.write_text("")
    # A second's pause before a restart: long enough for orders to meet a service that is down.
    supervisor = Supervisor(RestartPolicy(first_delay=1.0, max_delay=2.0))
    env = {**CHAOS_SETTINGS, "ORDERFLOW_FAULTS_FILE": str(faults)}
    replicas = {"orders": 2, "loyalty": 2}
    with running_pipeline(
        chaos_infra, work, CATALOG, prefix="chaos", env=env, replicas=replicas, supervisor=supervisor
    ) as pipeline:
        yield Chaos(pipeline, supervisor, faults)


Disruption = Callable[[Chaos], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class CaseOutcome:
    answers: list[Answer]
    # Orders stored during the case that the gateway did not answer 201 (refused, or no answer).
    stored_though_refused: int


async def run_case(case: str, chaos: Chaos, disrupt: Disruption, record_property: RecordProperty) -> CaseOutcome:
    await every_service_serves(chaos.pipeline)
    answers = await steady_orders(chaos.pipeline.gateway_url, disruption=lambda: disrupt(chaos))
    chaos.accepted = chaos.accepted | accepted_orders(answers)
    before, counted = chaos.counted, await reconcile(chaos.pipeline, chaos.accepted)
    record_property(RECONCILIATION, f"{counted.line(case, before)} {answered(answers)}")
    chaos.counted = counted
    assert any(answer.status == 201 for answer in answers)
    assert not [answer for answer in answers if answer.status == 500], "a crash is never a 500"
    counted.assert_exactly_once()
    return CaseOutcome(answers, len(counted.stored - counted.accepted) - len(before.stored - before.accepted))


async def every_service_serves(pipeline: Pipeline) -> None:
    """Each case starts whole: every process serves, and the gateway's /readyz reaches them all
    (a restarted replica is otherwise only redialled after the channel's reconnect backoff)."""

    def all_ready() -> bool:
        return all(service.is_ready() for service in pipeline.services.values())

    await eventually(lambda: asyncio.to_thread(all_ready), within=30, what="every service serves")


def answered(answers: list[Answer]) -> str:
    """How the gateway answered, e.g. `(answered 201 x140, 503 INVENTORY_UNAVAILABLE x10)`; 0: no answer."""
    counts = Counter(f"{answer.status} {answer.code}" if answer.code else str(answer.status) for answer in answers)
    return "(answered " + ", ".join(f"{status} x{count}" for status, count in sorted(counts.items())) + ")"


def exits_of(supervisor: Supervisor, service: ServiceProcess) -> int:
    return sum(1 for exit in supervisor.exits if exit.service is service)


async def died_and_returned(supervisor: Supervisor, service: ServiceProcess, exits_before: int) -> None:
    """Wait until `service` has exited (again) and the supervisor has it serving once more."""
    await eventually(
        lambda: exits_of(supervisor, service),
        lambda count: count > exits_before,
        within=30,
        what=f"{service.name} died",
    )
    await serves_again(service)


async def serves_again(service: ServiceProcess) -> None:
    await eventually(lambda: asyncio.to_thread(service.is_ready), within=30, what=f"{service.name} serves again")


def crashed_by(flag: str) -> Disruption:
    """Switch a crash fault on until it has killed an orders replica, then heal the demo."""

    async def disrupt(chaos: Chaos) -> None:
        replicas = [service for name, service in chaos.pipeline.services.items() if name.startswith("orders")]
        before = {service: exits_of(chaos.supervisor, service) for service in replicas}
        await asyncio.to_thread(chaos.faults.write_text, flag)
        try:
            await eventually(
                lambda: [service for service in replicas if exits_of(chaos.supervisor, service) > before[service]],
                within=30,
                what=f"{flag} fired",
            )
        finally:
            await asyncio.to_thread(chaos.faults.write_text, "")
        for service in replicas:
            await serves_again(service)

    return disrupt


async def kill(chaos: Chaos, name: str) -> None:
    service = chaos.pipeline.services[name]
    before = exits_of(chaos.supervisor, service)
    await asyncio.to_thread(service.kill)
    await died_and_returned(chaos.supervisor, service, before)


def controllable(server: ManagedServer | None, name: str) -> ManagedServer:
    if server is None:
        pytest.skip(f"{name} comes from an ORDERFLOW_*_URL: not ours to stop")
    return server


async def test_loyalty_sigkilled_mid_stream(chaos: Chaos, record_property: RecordProperty) -> None:
    await run_case("loyalty-sigkill", chaos, lambda chaos: kill(chaos, "loyalty"), record_property)


async def test_orders_killed_between_publish_and_mark(chaos: Chaos, record_property: RecordProperty) -> None:
    await run_case("relay-crash-after-publish", chaos, crashed_by("relay_crash_after_publish"), record_property)


async def test_orders_killed_between_reserve_and_commit(chaos: Chaos, record_property: RecordProperty) -> None:
    """The orphaned reservation expires after its TTL and its stock comes back (none left RESERVED)."""
    await run_case("orders-crash-before-commit", chaos, crashed_by("orders_crash_before_commit"), record_property)


def nats_down_for(seconds: float) -> Disruption:
    async def disrupt(chaos: Chaos) -> None:
        nats_server = chaos.pipeline.infra.nats
        assert nats_server is not None
        await asyncio.to_thread(nats_server.stop)
        try:
            await asyncio.sleep(seconds)  # the outage itself: orders keep coming meanwhile
        finally:
            await asyncio.to_thread(nats_server.start)

    return disrupt


async def test_nats_restarted(chaos: Chaos, record_property: RecordProperty) -> None:
    """A short outage: a publish whose ack was lost is re-sent within the window, and dropped by the broker."""
    await run_case("nats-restart", chaos, nats_down_for(DUPLICATE_WINDOW_SECONDS / 2), record_property)


async def test_nats_down_longer_than_the_duplicate_window(chaos: Chaos, record_property: RecordProperty) -> None:
    """A re-sent event now reaches the stream twice; the consumers' dedupe tables still apply it once."""
    await run_case("nats-long-outage", chaos, nats_down_for(DUPLICATE_WINDOW_SECONDS * 2), record_property)


async def test_postgres_restarted(chaos: Chaos, record_property: RecordProperty) -> None:
    postgres = controllable(chaos.pipeline.infra.postgres, "PostgreSQL")

    async def disrupt(_chaos: Chaos) -> None:
        await asyncio.to_thread(postgres.stop)
        try:
            await asyncio.sleep(1)  # the outage itself
        finally:
            await asyncio.to_thread(postgres.start)

    await run_case("postgres-restart", chaos, disrupt, record_property)


async def test_inventory_sigkilled_orders_fail_fast_and_write_nothing(
    chaos: Chaos, record_property: RecordProperty
) -> None:
    outcome = await run_case("inventory-sigkill", chaos, lambda chaos: kill(chaos, "inventory"), record_property)
    refused = [answer for answer in outcome.answers if answer.status != 201]
    assert refused, "some orders met inventory down"
    assert {(answer.status, answer.code) for answer in refused} <= {
        (503, "INVENTORY_UNAVAILABLE"),
        (504, "INVENTORY_TIMEOUT"),
    }
    assert all(answer.content_type.startswith("application/problem+json") for answer in refused)
    assert outcome.stored_though_refused == 0


async def test_a_replica_of_orders_and_of_loyalty_killed_still_exactly_once(
    chaos: Chaos, record_property: RecordProperty
) -> None:
    async def disrupt(chaos: Chaos) -> None:
        await asyncio.gather(kill(chaos, "orders-2"), kill(chaos, "loyalty-2"))

    await run_case("replica-sigkill", chaos, disrupt, record_property)


async def test_sigterm_to_each_service_under_load_loses_no_accepted_order(
    chaos: Chaos, record_property: RecordProperty
) -> None:
    async def disrupt(chaos: Chaos) -> None:
        for name in ("inventory", "orders", "loyalty", "gateway"):
            service = chaos.pipeline.services[name]
            before = exits_of(chaos.supervisor, service)
            assert service.pid is not None
            os.kill(service.pid, signal.SIGTERM)
            await died_and_returned(chaos.supervisor, service, before)

    await run_case("sigterm-each", chaos, disrupt, record_property)
