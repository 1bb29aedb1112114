"""`make up`'s Prometheus: compose's scrape configuration with every target moved to the ports
`make up` chose, still a configuration promtool accepts; and the banner says where everything is."""

import shutil
import subprocess
from pathlib import Path

import yaml

from orderflow_devstack.local_prometheus import CONFIG_DIR, local_config
from orderflow_devstack.processes import TopologyPorts
from orderflow_devstack.runner import _metrics_lines
from tests.support.promtool import promtool

PORTS = TopologyPorts(
    inventory=1, orders=2, loyalty=3, gateway=8001, inventory_metrics=9001, orders_metrics=9002, loyalty_metrics=9003
)


def test_every_service_is_scraped_on_its_local_port(tmp_path: Path) -> None:
    config = local_config((CONFIG_DIR / "prometheus.yml").read_text(), PORTS)
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in yaml.safe_load(config)["scrape_configs"]}
    assert jobs == {
        "gateway": ["127.0.0.1:8001"],
        "orders": ["127.0.0.1:9002"],
        "inventory": ["127.0.0.1:9001"],
        "loyalty": ["127.0.0.1:9003"],
    }
    (tmp_path / "prometheus.yml").write_text(config)
    shutil.copyfile(CONFIG_DIR / "alerts.yml", tmp_path / "alerts.yml")
    checked = subprocess.run(
        [str(promtool()), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_banner_lists_each_metrics_endpoint_and_how_to_get_prometheus() -> None:
    lines = _metrics_lines(PORTS, None)
    for url in PORTS.metrics_urls().values():
        assert url in lines
    assert "apt-get install prometheus" in lines
