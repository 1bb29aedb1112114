"""A whole pipeline of its own for the tools that drive it from outside (the end-to-end tests,
`orderflow bench`): the four services as separate processes, on free ports, wired to given servers,
with databases and consumers of their own, so pipelines sharing those servers never see each
other's data."""

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from orderflow_devstack.infra import Infrastructure, free_ports
from orderflow_devstack.processes import ServiceProcess, ServiceSpec, TopologyPorts, topology
from orderflow_devstack.supervision import Supervisor
from orderflow_devstack.web_app import web_spec
from orderflow_kit.probe import grpc_serving

READY_TIMEOUT = 90.0


@dataclass(frozen=True)
class Pipeline:
    gateway_url: str
    nats_url: str
    consumer: str
    infra: Infrastructure
    services: dict[str, ServiceProcess]
    log_dir: Path
    # Each service's database on infra.postgres_url.
    databases: dict[str, str]
    inventory_consumer: str
    # Each service's Prometheus metrics endpoint (replicas' as `orders-2`, ...), by service name.
    metrics_urls: dict[str, str] = dataclasses.field(default_factory=dict)
    # The web app's URL, when the pipeline runs it (`web=True`).
    web_url: str | None = None


@contextmanager
def running_pipeline(
    infra: Infrastructure,
    work: Path,
    catalog: Sequence[Mapping[str, object]],
    *,
    prefix: str,
    jwt_secret: str,
    env: Mapping[str, str] | None = None,
    replicas: Mapping[str, int] | None = None,
    supervisor: Supervisor | None = None,
    web: bool = False,
) -> Iterator[Pipeline]:
    """Start the four services (logs in `work/<service>.log`, as JSON), wait until each serves, and
    stop them at the end. Databases are `<prefix>_<run>_<service>`, the consumers
    `loyalty-<prefix>-<run>` and `inventory-<prefix>-<run>`, the fault flags' bucket
    `faults-<prefix>-<run>`; the gateway verifies tokens signed with `jwt_secret`.

    `env` adds or overrides settings of every service; `replicas` runs more copies of a gRPC
    service (`orders-2`, ...) on ports of their own; a `supervisor` restarts services that die;
    `web` runs the web app too (apps/web), a client of the gateway, signing in with `jwt_secret`."""
    run = uuid.uuid4().hex[:8]
    catalog_file = work / "catalog.json"
    catalog_file.write_text(json.dumps(list(catalog)))
    consumer = f"loyalty-{prefix}-{run}"
    databases = {name: f"{prefix}_{run}_{name}" for name in ("inventory", "orders", "loyalty")}
    own = {
        **{f"ORDERFLOW_{name.upper()}_DATABASE": database for name, database in databases.items()},
        "ORDERFLOW_LOYALTY_CONSUMER": consumer,
        "ORDERFLOW_LOYALTY_DELIVER_POLICY": "new",
        "ORDERFLOW_INVENTORY_CONSUMER": f"inventory-{prefix}-{run}",
        "ORDERFLOW_INVENTORY_DELIVER_POLICY": "new",
        # Fault flags set through this pipeline's gateway break this pipeline alone.
        "ORDERFLOW_FAULTS_BUCKET": f"faults-{prefix}-{run}",
        "ORDERFLOW_LOG_FORMAT": "json",
        **(env or {}),
    }
    ports = TopologyPorts.free()
    specs = [
        dataclasses.replace(spec, env={**spec.env, **own})
        for spec in topology(infra, ports, catalog=catalog_file, jwt_secret=jwt_secret)
    ]
    copies = [
        _replica(next(spec for spec in specs if spec.name == name), number)
        for name, count in (replicas or {}).items()
        for number in range(2, count + 1)
    ]
    specs = [_calling_every_replica(spec, [*specs, *copies]) for spec in specs] + copies
    web_url = None
    if web:
        (web_port,) = free_ports(1)
        web_url = f"http://127.0.0.1:{web_port}"
        log_format = {"ORDERFLOW_LOG_FORMAT": own["ORDERFLOW_LOG_FORMAT"]}
        specs.append(web_spec(f"http://127.0.0.1:{ports.gateway}", web_port, jwt_secret=jwt_secret, env=log_format))
    make = supervisor.service if supervisor is not None else ServiceProcess
    services = {spec.name: make(spec, (work / f"{spec.name}.log").open("w", encoding="utf-8")) for spec in specs}
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        for service in services.values():
            service.start()
        for service in services.values():
            service.wait_ready(deadline)
        yield Pipeline(
            f"http://127.0.0.1:{ports.gateway}",
            infra.nats_url,
            consumer,
            infra,
            services,
            work,
            databases,
            own["ORDERFLOW_INVENTORY_CONSUMER"],
            {**ports.metrics_urls(), **{copy.name: _metrics_url(copy) for copy in copies}},
            web_url=web_url,
        )
    finally:
        for service in reversed(services.values()):
            service.stop()


def _replica(spec: ServiceSpec, number: int) -> ServiceSpec:
    """Another copy of a gRPC service: same databases and consumers, ports of its own."""
    port, metrics_port = free_ports(2)
    name = spec.name.upper()
    return dataclasses.replace(
        spec,
        name=f"{spec.name}-{number}",
        env={**spec.env, f"ORDERFLOW_{name}_PORT": str(port), f"ORDERFLOW_{name}_METRICS_PORT": str(metrics_port)},
        ready=partial(grpc_serving, f"127.0.0.1:{port}"),
    )


def _metrics_url(spec: ServiceSpec) -> str:
    return f"http://127.0.0.1:{spec.env[f'ORDERFLOW_{spec.module.upper()}_METRICS_PORT']}/metrics"


def _calling_every_replica(spec: ServiceSpec, specs: Sequence[ServiceSpec]) -> ServiceSpec:
    """Point `spec`'s clients at every copy of each service (the channels balance round-robin)."""
    env = dict(spec.env)
    for name in ("inventory", "orders", "loyalty"):
        ports = [copy.env[f"ORDERFLOW_{name.upper()}_PORT"] for copy in specs if copy.module == name]
        env[f"ORDERFLOW_{name.upper()}_ADDR"] = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)
    return dataclasses.replace(spec, env=env)
