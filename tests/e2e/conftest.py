"""The whole pipeline for end-to-end tests: the four services as separate processes, on free
ports, wired to the session's real servers, with databases and a consumer of their own."""

import dataclasses
import json
import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orderflow_kit.infra import Infrastructure
from orderflow_kit.processes import ServiceProcess, TopologyPorts, topology

READY_TIMEOUT = 90.0

# Stock is tiny where a test needs to run out, huge where it must not.
CATALOG = [
    {"sku": "E2E-LIMITED", "name": "Limited edition print", "price_cents": 4900, "stock": 50},
    {"sku": "E2E-MUG", "name": "Enamel mug", "price_cents": 1250, "stock": 1_000_000},
    {"sku": "E2E-TEE", "name": "Organic tee", "price_cents": 2599, "stock": 1_000_000},
]


@dataclass(frozen=True)
class Pipeline:
    gateway_url: str
    nats_url: str
    consumer: str
    infra: Infrastructure
    services: dict[str, ServiceProcess]
    log_dir: Path


@pytest.fixture(scope="session")
def pipeline(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    run = uuid.uuid4().hex[:8]
    work = tmp_path_factory.mktemp("e2e")
    catalog = work / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    consumer = f"loyalty-e2e-{run}"
    own = {
        "ORDERFLOW_INVENTORY_DATABASE": f"e2e_{run}_inventory",
        "ORDERFLOW_ORDERS_DATABASE": f"e2e_{run}_orders",
        "ORDERFLOW_LOYALTY_DATABASE": f"e2e_{run}_loyalty",
        "ORDERFLOW_LOYALTY_CONSUMER": consumer,
        "ORDERFLOW_LOYALTY_DELIVER_POLICY": "new",
        "ORDERFLOW_LOYALTY_RETRY_BASE_SECONDS": "0.2",
        "ORDERFLOW_LOYALTY_RETRY_MAX_SECONDS": "1",
        "ORDERFLOW_LOG_FORMAT": "json",
    }
    ports = TopologyPorts.free()
    specs = [dataclasses.replace(spec, env={**spec.env, **own}) for spec in topology(infra, ports, catalog=catalog)]
    services = {
        spec.name: ServiceProcess(spec, (work / f"{spec.name}.log").open("w", encoding="utf-8")) for spec in specs
    }
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        for service in services.values():
            service.start()
        for service in services.values():
            service.wait_ready(deadline)
        yield Pipeline(f"http://127.0.0.1:{ports.gateway}", infra.nats_url, consumer, infra, services, work)
    finally:
        for service in reversed(services.values()):
            service.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, show what each service logged last: the first place to look."""
    report = yield
    pipeline = getattr(item, "funcargs", {}).get("pipeline")
    if report.failed and isinstance(pipeline, Pipeline):
        for name, service in pipeline.services.items():
            report.sections.append((f"{name} log (tail)", "\n".join(service.tail(40))))
    return report
