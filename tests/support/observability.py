"""What the dashboards and alert rules in infra/observability query, and what a metrics endpoint
serves: the two sides of the check that no panel or alert waits for a series nobody exports."""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "infra" / "observability"
PROMETHEUS_CONFIG = OBSERVABILITY / "prometheus" / "prometheus.yml"
ALERT_RULES = OBSERVABILITY / "prometheus" / "alerts.yml"
DASHBOARDS = OBSERVABILITY / "grafana" / "dashboards"
# Series Prometheus makes itself for every target: no service exports them.
SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.])[a-zA-Z_:][a-zA-Z0-9_:]*(?![\w:])")
# PromQL's keywords and functions (an identifier followed by "(" is a function, whatever its name).
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"})


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads (labels, functions and keywords left out)."""
    text = _STRING.sub('""', expression)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group()
        if name.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(name)
    return names


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def dashboard_queries(path: Path) -> Iterator[tuple[str, str]]:
    """(where, expression) for every query of every panel of one dashboard (rows included)."""
    dashboard: dict[str, Any] = json.loads(path.read_text())
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield f"{path.name}: {panel.get('title')}", target["expr"]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def alert_queries() -> Iterator[tuple[str, str]]:
    rules: dict[str, Any] = yaml.safe_load(ALERT_RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            yield f"{ALERT_RULES.name}: {rule.get('alert') or rule.get('record')}", rule["expr"]


def queried_metrics() -> dict[str, list[str]]:
    """Every metric a dashboard panel or an alert rule queries, with where it is queried."""
    queried: dict[str, list[str]] = {}
    queries = [query for path in dashboard_files() for query in dashboard_queries(path)]
    for where, expression in [*queries, *alert_queries()]:
        for name in metric_names(expression):
            queried.setdefault(name, []).append(where)
    return queried


def exported_names(exposition: str) -> set[str]:
    """Every series name a metrics endpoint serves, also for a metric with no sample yet (its
    HELP and TYPE lines): a labelled counter has no series until a first label set is counted."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum"))
    return names
