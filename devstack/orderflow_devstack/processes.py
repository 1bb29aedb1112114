"""Run orderflow's own services as child processes: shared by `make up` and the end-to-end tests.

Each service runs as `python -m <module>` with its settings in ORDERFLOW_* environment variables,
and its output is forwarded line by line, prefixed with its name, to one sink (the terminal for
`make up`, a file per service in the tests).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TextIO

from orderflow_devstack.infra import ChildProcess, Infrastructure, free_port, free_ports
from orderflow_kit.dev_tokens import SECRET_ENV
from orderflow_kit.grpc_tls import channel_credentials
from orderflow_kit.probe import grpc_serving, http_ok
from orderflow_kit.settings import Settings

__all__ = [
    "ServiceProcess",
    "ServiceSpec",
    "TopologyPorts",
    "free_port",
    "free_ports",
    "topology",
]

_HOST = "127.0.0.1"
_NAME_WIDTH = len("inventory")
_TAIL_LINES = 200
_OUTPUT_LOCK = threading.Lock()  # one line at a time, even when several services share a sink


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service and how to tell that it serves."""

    name: str
    module: str
    env: Mapping[str, str]
    ready: Callable[[], bool]


class ServiceProcess(ChildProcess):
    """One service as a child process, its output copied to `sink` as `name | line`.

    `on_exit` is called (from the output thread) whenever the process ends, including after
    stop(): a supervisor (orderflow_devstack.supervision) hangs its restarting on it, and tells the
    two apart by `stop_requested`.
    """

    def __init__(
        self,
        spec: ServiceSpec,
        sink: TextIO,
        *,
        color: int | None = None,
        on_exit: Callable[[ServiceProcess], None] | None = None,
    ) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self._sink = sink
        label = spec.name.ljust(_NAME_WIDTH)
        self._prefix = f"\x1b[{color}m{label}\x1b[0m | " if color is not None else f"{label} | "
        self._on_exit = on_exit
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._output: threading.Thread | None = None
        # start() and stop() take turns, so a restart racing a stop() never outlives it.
        self._lifecycle = threading.Lock()
        self._stop_requested = False
        self.started_at: float | None = None  # time.monotonic() of the latest start

    @property
    def stop_requested(self) -> bool:
        """True from stop() until the next start(): an exit now is one somebody asked for."""
        return self._stop_requested

    def start(self) -> None:
        """Spawn the service and return at once; wait_ready() tells when it serves."""
        with self._lifecycle:
            self._stop_requested = False
            self._launch()

    def start_again(self) -> bool:
        """A supervisor's restart: start the service unless stop() was called meanwhile (or it
        runs already); True when it was started."""
        with self._lifecycle:
            if self._stop_requested or (self._popen is not None and self._popen.poll() is None):
                return False
            self._launch()
            return True

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, SIGKILL after `timeout`, then let the output thread copy the last lines."""
        with self._lifecycle:
            self._stop_requested = True
        super().stop(timeout)
        if self._output is not None:
            self._output.join(timeout)

    def kill(self) -> None:
        """SIGKILL and reap, before any restart may replace the process being reaped."""
        with self._lifecycle:
            super().kill()

    def is_ready(self) -> bool:
        return self.spec.ready()

    def tail(self, lines: int = 30) -> list[str]:
        with _OUTPUT_LOCK:
            return list(self._tail)[-lines:]

    def _launch(self) -> None:
        # Unbuffered, or a child writing to a pipe holds its lines back until a buffer fills.
        env = {**os.environ, **self.spec.env, "PYTHONUNBUFFERED": "1"}
        popen = self._spawn([sys.executable, "-m", self.spec.module], stdout=subprocess.PIPE, env=env)
        self.started_at = time.monotonic()
        self._output = threading.Thread(
            target=self._forward_output, args=(popen,), name=f"{self.name}-output", daemon=True
        )
        self._output.start()

    def _forward_output(self, popen: subprocess.Popen[bytes]) -> None:
        """Runs until the child closes its output, which is when it exits."""
        assert popen.stdout is not None
        for raw in popen.stdout:
            line = raw.decode(errors="replace").rstrip()
            with _OUTPUT_LOCK:
                self._tail.append(line)
                self._sink.write(f"{self._prefix}{line}\n")
                self._sink.flush()
        popen.wait()
        if self._on_exit is not None:
            self._on_exit(self)


@dataclass(frozen=True)
class TopologyPorts:
    """Where the services listen: the documented ports for `make up`, free ones for tests. The
    gRPC services serve their metrics on ports of their own; the gateway at /metrics on its port."""

    inventory: int = 50051
    orders: int = 50052
    loyalty: int = 50053
    gateway: int = 8000
    inventory_metrics: int = 9151
    orders_metrics: int = 9152
    loyalty_metrics: int = 9153

    @classmethod
    def free(cls) -> TopologyPorts:
        return cls(*free_ports(7))

    @classmethod
    def documented(cls) -> TopologyPorts:
        """`make up`'s: the documented ports, except a metrics port that is taken, which becomes a
        free one (the banner says where): metrics are not worth failing to start for."""
        defaults = cls()
        return dataclasses.replace(
            defaults,
            inventory_metrics=documented_or_free(defaults.inventory_metrics),
            orders_metrics=documented_or_free(defaults.orders_metrics),
            loyalty_metrics=documented_or_free(defaults.loyalty_metrics),
        )

    def metrics_urls(self, host: str = _HOST) -> dict[str, str]:
        """Each service's metrics endpoint, by service name."""
        return {
            "gateway": f"http://{host}:{self.gateway}/metrics",
            "orders": f"http://{host}:{self.orders_metrics}/metrics",
            "inventory": f"http://{host}:{self.inventory_metrics}/metrics",
            "loyalty": f"http://{host}:{self.loyalty_metrics}/metrics",
        }


def documented_or_free(port: int) -> int:
    """`port` when nobody listens on it, else a free one."""
    with socket.socket() as probe:
        try:
            probe.bind((_HOST, port))
        except OSError:
            return free_port()
    return port


def topology(
    infra: Infrastructure,
    ports: TopologyPorts,
    *,
    catalog: Path | None = None,
    log_format: str = "console",
    jwt_secret: str | None = None,
) -> list[ServiceSpec]:
    """The four services in start order, gateway last, wired to `infra` and to each other.
    `jwt_secret`, when given, is the gateway's alone: the one that verifies bearer tokens."""
    env = {
        "ORDERFLOW_NATS_URL": infra.nats_url,
        "ORDERFLOW_POSTGRES_URL": infra.postgres_url,
        "ORDERFLOW_REDIS_URL": infra.redis_url,
        "ORDERFLOW_LISTEN_HOST": _HOST,
        "ORDERFLOW_INVENTORY_PORT": str(ports.inventory),
        "ORDERFLOW_ORDERS_PORT": str(ports.orders),
        "ORDERFLOW_LOYALTY_PORT": str(ports.loyalty),
        "ORDERFLOW_GATEWAY_PORT": str(ports.gateway),
        "ORDERFLOW_INVENTORY_METRICS_PORT": str(ports.inventory_metrics),
        "ORDERFLOW_ORDERS_METRICS_PORT": str(ports.orders_metrics),
        "ORDERFLOW_LOYALTY_METRICS_PORT": str(ports.loyalty_metrics),
        "ORDERFLOW_INVENTORY_ADDR": f"{_HOST}:{ports.inventory}",
        "ORDERFLOW_ORDERS_ADDR": f"{_HOST}:{ports.orders}",
        "ORDERFLOW_LOYALTY_ADDR": f"{_HOST}:{ports.loyalty}",
        "ORDERFLOW_LOG_FORMAT": log_format,
    }
    if catalog is not None:
        env["ORDERFLOW_CATALOG"] = str(catalog)
    grpc_services = {"inventory": ports.inventory, "orders": ports.orders, "loyalty": ports.loyalty}
    # The services inherit this process's environment, ORDERFLOW_GRPC_TLS_* included: probe them alike.
    credentials = channel_credentials(Settings())
    specs = [
        ServiceSpec(name, name, dict(env), partial(grpc_serving, f"{_HOST}:{port}", credentials=credentials))
        for name, port in grpc_services.items()
    ]
    gateway_env = {**env, SECRET_ENV: jwt_secret} if jwt_secret is not None else dict(env)
    gateway_ready = partial(http_ok, f"http://{_HOST}:{ports.gateway}/readyz")
    return [*specs, ServiceSpec("gateway", "gateway", gateway_env, gateway_ready)]
