"""`make up` without Docker: infrastructure plus the four services as local processes.

It blocks until Ctrl-C or SIGTERM, then stops the services (gateway first) and then the servers
it started, so nothing is left running. Meanwhile a service that dies is restarted with backoff,
as compose's `restart: unless-stopped` does (orderflow_kit.supervision); one that fails while the
pipeline starts up stops everything instead, with its last output.
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
from orderflow_kit.dev_tokens import JWKS_URL_ENV, secret_for_make_up
from orderflow_kit.infra import Infrastructure, StartupError, provide_infrastructure
from orderflow_kit.processes import ServiceProcess, TopologyPorts, topology
from orderflow_kit.supervision import Supervisor

READY_TIMEOUT = 90.0
"""Seconds all services together get to become ready."""

_COLORS = (36, 33, 35, 32)  # ANSI cyan, yellow, magenta, green: one per service


def run_topology(state_dir: Path) -> int:
    """Start everything, serve until Ctrl-C or SIGTERM, stop everything; return the exit code."""
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` and `docker stop` get the Ctrl-C cleanup
    ports = TopologyPorts()
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
            try:
                _start(services)
                _print_banner(infra, ports, state_dir)
                _wait_for_interrupt()
            finally:
                print("orderflow: stopping", flush=True)
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


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM; the supervisor restarts services meanwhile, on its own threads."""
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        return


def _print_banner(infra: Infrastructure, ports: TopologyPorts, state_dir: Path) -> None:
    gateway = f"localhost:{ports.gateway}"
    item = {"sku": _example_sku(ports), "quantity": 1}
    order = json.dumps({"customer_id": "c-1", "items": [item]}, separators=(",", ":"))
    bearer = '-H "Authorization: Bearer $TOKEN"'
    print(
        f"""
orderflow is up: http://127.0.0.1:{ports.gateway}  (API docs: /docs)

  curl -s {gateway}/v1/products
  {_token_command(state_dir)}
  curl -s -X POST {gateway}/v1/orders {bearer} -H 'content-type: application/json' \\
       -d '{order}'
  curl -s '{gateway}/v1/orders?customer_id=c-1' {bearer}
  curl -s {gateway}/v1/customers/c-1/loyalty {bearer}

  nats      {infra.nats_url}
  postgres  {infra.postgres_url}
  redis     {infra.redis_url}
  state     {state_dir.resolve()}  (data, server logs, a generated JWT secret)

Ctrl-C stops everything.
""",
        flush=True,
    )


def _token_command(state_dir: Path) -> str:
    """How to get a bearer token for customer c-1 from another terminal."""
    if os.environ.get(JWKS_URL_ENV):
        return "TOKEN=<a token for customer c-1 from your identity provider>"
    orderflow = os.path.relpath(Path(sys.executable).with_name("orderflow"))
    state = "" if state_dir == Path(".state") else f" --state-dir {state_dir}"
    return f"TOKEN=$({orderflow} token --customer c-1{state})  # add --admin to read every customer's data"


def _example_sku(ports: TopologyPorts) -> str:
    """A SKU from inventory's catalog, so the example order can be pasted as it is."""
    with grpc.insecure_channel(f"127.0.0.1:{ports.inventory}") as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        try:
            products = stub.ListProducts(inventory_pb2.ListProductsRequest(), timeout=2.0).products
        except grpc.RpcError:
            return "<a sku>"
    return products[0].sku if products else "<a sku>"
