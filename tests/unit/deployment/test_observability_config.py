"""The `observability` profile, checked without a Docker engine: Prometheus's configuration passes
promtool, the dashboards load and query the provisioned data source, every service is scraped
where compose makes it serve its metrics, and the profile's containers are wired like the rest.
(That each queried metric is really exported is checked against a running pipeline:
tests/e2e/test_metrics.py.)"""

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.observability import (
    ALERT_RULES,
    DASHBOARDS,
    OBSERVABILITY,
    PROMETHEUS_CONFIG,
    dashboard_files,
    dashboard_queries,
    metric_names,
)
from tests.support.promtool import promtool

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ("gateway", "orders", "inventory", "loyalty")
PROFILE = ("jaeger", "prometheus", "grafana")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return document


def test_promtool_accepts_the_configuration_and_its_alert_rules() -> None:
    result = subprocess.run(
        [str(promtool()), "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout + result.stderr  # the rule file was found and checked too


def test_prometheus_scrapes_every_service_where_compose_serves_its_metrics(compose: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    environment = compose["x-service"]["environment"]
    expected = {
        "gateway": ["gateway:8000"],
        **{name: [f"{name}:{environment[f'ORDERFLOW_{name.upper()}_METRICS_PORT']}"] for name in SERVICES[1:]},
    }
    assert targets == expected


def test_the_profile_adds_jaeger_prometheus_and_grafana_with_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in PROFILE:
        assert services[name]["profiles"] == ["observability"], name
        assert "healthcheck" in services[name], name
    assert not any("profiles" in services[name] for name in SERVICES)  # plain `up` runs the pipeline alone
    waits_for = {name: set(services[name].get("depends_on", {})) for name in PROFILE}
    assert waits_for["prometheus"] == set(SERVICES)
    assert waits_for["grafana"] == {"prometheus"}
    for name in ("prometheus", "grafana"):
        conditions = {dependency["condition"] for dependency in services[name]["depends_on"].values()}
        assert conditions == {"service_healthy"}, name


def test_services_send_traces_to_jaeger_over_otlp_http(compose: dict[str, Any]) -> None:
    for name in SERVICES:
        assert compose["services"][name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"


def test_mounted_configuration_exists(compose: dict[str, Any]) -> None:
    for name in ("prometheus", "grafana"):
        for volume in compose["services"][name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).is_dir(), volume
    assert (ROOT / "infra/observability/prometheus/prometheus.yml").exists()


def test_grafana_provisions_the_data_source_and_the_dashboards() -> None:
    provisioning = OBSERVABILITY / "grafana" / "provisioning"
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "orderflow.yml").read_text())["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"  # where compose mounts DASHBOARDS
    for path in dashboard_files():
        for panel in json.loads(path.read_text())["panels"]:
            for target in [panel, *panel.get("targets", [])]:
                if "datasource" in target:
                    assert target["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]


def test_the_orderflow_dashboard_loads_and_shows_what_the_issue_asks_for() -> None:
    dashboard = json.loads((DASHBOARDS / "orderflow.json").read_text())
    assert dashboard["uid"] == "orderflow"
    assert dashboard["title"] == "orderflow"
    titles = {panel["title"] for panel in dashboard["panels"]}
    for wanted in (
        "Orders/s",
        "Latency per hop, p50",
        "Latency per hop, p99",
        "Outbox lag",
        "Consumer lag",
        "Dead-letter depth",
        "Reservations held",
        "Errors by code",
    ):
        assert wanted in titles
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    queries = list(dashboard_queries(DASHBOARDS / "orderflow.json"))
    assert queries
    assert all(metric_names(expression) for _, expression in queries)


def test_alert_rules_name_a_runbook() -> None:
    for group in yaml.safe_load(ALERT_RULES.read_text())["groups"]:
        for rule in group["rules"]:
            runbook = rule["annotations"]["runbook"]
            assert (ROOT / runbook.split("#")[0]).exists(), rule["alert"]


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        ("sum(rate(orderflow_orders_created_total[1m]))", {"orderflow_orders_created_total"}),
        (
            'histogram_quantile(0.99, sum by (le, consumer) (rate(a_bucket{method="/x.Y/Z", route="/v1/{id}"}[1m])))',
            {"a_bucket"},
        ),
        ('up{job=~"gateway|orders"} == 0 and on(job) b offset 5m', {"up", "b"}),
        ("sum by (consumer) (x + y) > 0\nand\nsum without (instance) (z) == 0", {"x", "y", "z"}),
    ],
)
def test_metric_names_are_read_from_promql(expression: str, names: set[str]) -> None:
    assert metric_names(expression) == names
