"""`make up` without Docker: infrastructure plus the four services and the web app as local processes.

It blocks until Ctrl-C or SIGTERM, then stops the services (gateway first) and then the servers
it started, so nothing is left running. The banner shows the servers' URLs with their passwords
masked; the full URLs are in `<state dir>/orderflow.env`, readable by its owner only, for tools
such as `orderflow dlq`. Meanwhile a service that dies is restarted with backoff,
as compose's `restart: unless-stopped` does (orderflow_devstack.supervision); one that fails while the
pipeline starts up stops everything instead, with its last output.

Each service's metrics endpoint is in the banner; with a `prometheus` binary on PATH, a Prometheus
scraping them all (orderflow_devstack.local_prometheus) starts too, and the banner gives its URL.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import grpc

from orderflow_contracts.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from orderflow_devstack.dev_secret import secret_for_make_up
from orderflow_devstack.infra import Infrastructure, StartupError, provide_infrastructure, write_private_file
from orderflow_devstack.local_prometheus import LocalPrometheus, local_prometheus
from orderflow_devstack.processes import ServiceProcess, TopologyPorts, topology
from orderflow_devstack.supervision import Supervisor
from orderflow_devstack.web_app import web_port_for_make_up, web_spec
from orderflow_kit.dev_tokens import JWKS_URL_ENV, SECRET_ENV
from orderflow_kit.grpc_client import blocking_channel
from orderflow_kit.grpc_tls import channel_credentials
from orderflow_kit.redaction import redact
from orderflow_kit.settings import MAKE_UP_ENV_FILE, Settings

READY_TIMEOUT = 90.0
"""Seconds all services together get to become ready."""

_COLORS = (36, 33, 35, 32)  # ANSI cyan, yellow, magenta, green: one per service
_WEB_COLOR = 34  # ANSI blue
ENV_FILE = MAKE_UP_ENV_FILE.name


def run_topology(state_dir: Path) -> int:
    """Start everything, serve until Ctrl-C or SIGTERM, stop everything; return the exit code."""
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` and `docker stop` get the Ctrl-C cleanup
    ports = TopologyPorts.documented()
    supervisor = Supervisor()
    tty = sys.stdout.isatty()
    jwt_secret = secret_for_make_up(state_dir)
    try:
        with provide_infrastructure(state_dir) as infra:
            specs = topology(infra, ports, jwt_secret=jwt_secret)
            services = [
                supervisor.service(spec, sys.stdout, color=color if tty else None)
                for spec, color in zip(specs, _COLORS, strict=True)
            ]
            web_port = web_port_for_make_up()
            web = web_spec(f"http://127.0.0.1:{ports.gateway}", web_port, jwt_secret=jwt_secret or _env_secret())
            services.append(supervisor.service(web, sys.stdout, color=_WEB_COLOR if tty else None))
            prometheus = local_prometheus(state_dir, ports)
            try:
                _start(services[:-1])
                services[-1].start()
                services[-1].wait_ready(time.monotonic() + READY_TIMEOUT)
                prometheus = _start_prometheus(prometheus)
                env_file = write_env_file(infra, state_dir)
                print(banner(infra, ports, env_file, _example_sku(ports), prometheus, web_port), flush=True)
                _wait_for_interrupt()
            finally:
                print("orderflow: stopping", flush=True)
                if prometheus is not None:
                    prometheus.stop()
                for service in reversed(services):
                    service.stop()
    except StartupError as exc:
        print(f"orderflow: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _start(services: list[ServiceProcess]) -> None:
    """Backends together, then the gateway once they serve; one deadline for all."""
    deadline = time.monotonic() + READY_TIMEOUT
    *backends, gateway = services
    for service in backends:
        service.start()
    for service in backends:
        service.wait_ready(deadline)
    gateway.start()
    gateway.wait_ready(deadline)


def _start_prometheus(prometheus: LocalPrometheus | None) -> LocalPrometheus | None:
    """Started, or None: the pipeline runs on without it when it cannot start, saying why."""
    if prometheus is None:
        return None
    try:
        prometheus.start()
    except StartupError as error:
        print(f"orderflow: prometheus not started: {error}", file=sys.stderr, flush=True)
        prometheus.stop()
        return None
    return prometheus


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM; the supervisor restarts services meanwhile, on its own threads."""
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        return


def write_env_file(infra: Infrastructure, state_dir: Path) -> Path:
    """The servers' URLs, passwords included, as ORDERFLOW_* settings; only the owner may read it."""
    path = state_dir / ENV_FILE
    settings = {
        "ORDERFLOW_NATS_URL": infra.nats_url,
        "ORDERFLOW_POSTGRES_URL": infra.postgres_url,
        "ORDERFLOW_REDIS_URL": infra.redis_url,
    }
    write_private_file(path, "".join(f"{name}={value}\n" for name, value in settings.items()))
    return path


def _env_secret() -> str | None:
    """The development secret the gateway got from the environment, for the web app's sign-in."""
    return os.environ.get(SECRET_ENV) or None


def banner(
    infra: Infrastructure,
    ports: TopologyPorts,
    env_file: Path,
    sku: str,
    prometheus: LocalPrometheus | None = None,
    web_port: int | None = None,
) -> str:
    """What `make up` prints once everything serves: how to use it, and where things are; no password."""
    gateway = f"localhost:{ports.gateway}"
    web = (
        f"\n  shop and console: http://127.0.0.1:{web_port}  (sign in as any customer, or as an admin)\n"
        if web_port
        else ""
    )
    order = json.dumps({"customer_id": "c-1", "items": [{"sku": sku, "quantity": 1}]}, separators=(",", ":"))
    bearer = '-H "Authorization: Bearer $TOKEN"'
    return f"""
orderflow is up: http://127.0.0.1:{ports.gateway}  (API docs: /docs)
{web}
  curl -s {gateway}/v1/products
  {_token_command(env_file.parent)}
  curl -s -X POST {gateway}/v1/orders {bearer} -H 'content-type: application/json' \\
       -d '{order}'
  curl -s '{gateway}/v1/orders?customer_id=c-1' {bearer}
  curl -s {gateway}/v1/customers/c-1/loyalty {bearer}

  nats      {redact(infra.nats_url)}
  postgres  {redact(infra.postgres_url)}
  redis     {redact(infra.redis_url)}
  state     {env_file.parent.resolve()}  (data, server logs, a generated JWT secret)
  secrets   {env_file.resolve()}  (the URLs with their passwords)
            .venv/bin/orderflow dlq count  (reads it when ORDERFLOW_NATS_URL is not set)

{_metrics_lines(ports, prometheus)}

Ctrl-C stops everything.
"""


def _metrics_lines(ports: TopologyPorts, prometheus: LocalPrometheus | None) -> str:
    """Where each service's metrics are, and the Prometheus scraping them (docs/observability.md)."""
    endpoints = [f"  metrics   {name.ljust(9)} {url}" for name, url in ports.metrics_urls().items()]
    if prometheus is not None:
        scraping = f"  prometheus {prometheus.url}  (scrapes them all; alerts: {prometheus.url}/alerts)"
    else:
        scraping = "  prometheus not started: no `prometheus` on PATH (Debian: apt-get install prometheus)"
    return "\n".join([*endpoints, scraping])


def _token_command(state_dir: Path) -> str:
    """How to get a bearer token for customer c-1 from another terminal."""
    if os.environ.get(JWKS_URL_ENV):
        return "TOKEN=<a token for customer c-1 from your identity provider>"
    orderflow = os.path.relpath(Path(sys.executable).with_name("orderflow"))
    state = "" if state_dir == Path(".state") else f" --state-dir {state_dir}"
    return f"TOKEN=$({orderflow} token --customer c-1{state})  # add --admin to read every customer's data"


def _example_sku(ports: TopologyPorts) -> str:
    """A SKU from inventory's catalog, so the example order can be pasted as it is."""
    with blocking_channel(f"127.0.0.1:{ports.inventory}", channel_credentials(Settings())) as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        try:
            products = stub.ListProducts(inventory_pb2.ListProductsRequest(), timeout=2.0).products
        except grpc.RpcError:
            return "<a sku>"
    return products[0].sku if products else "<a sku>"
