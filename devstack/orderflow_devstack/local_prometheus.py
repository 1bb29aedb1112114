"""Prometheus beside `make up`, when a `prometheus` binary is on PATH (Debian: `apt-get install
prometheus`): the scrape configuration and alert rules compose uses (infra/observability/prometheus),
with each service's target rewritten to the local port `make up` chose, its data under the state
dir, listening on 127.0.0.1:9090 (or a free port when that one is taken).

The configuration is rewritten as text (one `"<service>:<port>"` target per job), so the runner
needs no YAML library; the alert rules are copied beside it, where its relative `rule_files` finds them."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from orderflow_devstack.infra import ChildProcess
from orderflow_devstack.processes import TopologyPorts, documented_or_free
from orderflow_kit.probe import http_ok

CONFIG_DIR = Path(__file__).resolve().parents[2] / "infra" / "observability" / "prometheus"
DEFAULT_PORT = 9090
START_TIMEOUT = 30.0
SERVICES = ("gateway", "orders", "inventory", "loyalty")
# A compose target: "orders:9152".
_TARGET = re.compile(r'"(?P<service>' + "|".join(SERVICES) + r'):\d+"')


def local_config(config: str, ports: TopologyPorts, host: str = "127.0.0.1") -> str:
    """Compose's Prometheus configuration with every service's target moved to `ports`."""
    addresses = {name: url.split("//", 1)[1].split("/", 1)[0] for name, url in ports.metrics_urls(host).items()}
    rewritten, count = _TARGET.subn(lambda match: f'"{addresses[match["service"]]}"', config)
    if count != len(SERVICES):
        raise ValueError(f"expected one target for each of {', '.join(SERVICES)}, found {count}")
    return rewritten


class LocalPrometheus(ChildProcess):
    def __init__(self, binary: str, state_dir: Path, ports: TopologyPorts) -> None:
        super().__init__("prometheus")
        self.binary = binary
        self.directory = state_dir / "prometheus"
        self.port = documented_or_free(DEFAULT_PORT)
        self.log_path = self.directory / "prometheus.log"
        self._ports = ports

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Write the configuration, start, and return once Prometheus says it is ready."""
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        config.write_text(local_config((CONFIG_DIR / "prometheus.yml").read_text(), self._ports))
        for rules in CONFIG_DIR.glob("*.yml"):
            if rules.name != "prometheus.yml":
                shutil.copyfile(rules, self.directory / rules.name)
        command = [
            self.binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with self.log_path.open("ab") as log:
            self._spawn(command, stdout=log)
        self.wait_ready(time.monotonic() + START_TIMEOUT)

    def is_ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready")

    def tail(self, lines: int = 30) -> list[str]:
        if not self.log_path.exists():
            return []
        return self.log_path.read_text(errors="replace").splitlines()[-lines:]


def local_prometheus(state_dir: Path, ports: TopologyPorts) -> LocalPrometheus | None:
    """A Prometheus to start beside `make up`, or None without a `prometheus` on PATH (or without
    the repository's configuration, as in an installed package)."""
    binary = shutil.which("prometheus")
    if binary is None or not (CONFIG_DIR / "prometheus.yml").exists():
        return None
    return LocalPrometheus(binary, state_dir, ports)
