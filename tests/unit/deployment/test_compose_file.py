"""No Docker engine runs where these tests run, so compose.yaml is checked statically: it must be
a valid Compose file, and it must start the services exactly as `make up` does."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "compose.yaml"
SERVICES = ("inventory", "orders", "loyalty", "gateway")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


def test_compose_file_matches_the_compose_specification() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_container_has_a_health_check(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"nats", "postgres", "redis", *SERVICES}
    missing = [name for name, service in compose["services"].items() if "healthcheck" not in service]
    assert not missing


def test_services_wait_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    for name in SERVICES:
        depends_on = compose["services"][name]["depends_on"]
        assert depends_on, name
        assert {dependency["condition"] for dependency in depends_on.values()} == {"service_healthy"}, name


def test_jetstream_is_on_with_a_volume(compose: dict[str, Any]) -> None:
    nats = compose["services"]["nats"]
    assert "-js" in nats["command"]
    assert any(volume.endswith(":/data") for volume in nats["volumes"])


def test_postgres_creates_one_database_per_service(compose: dict[str, Any]) -> None:
    init_scripts = [v.split(":")[0] for v in compose["services"]["postgres"]["volumes"] if "initdb" in v]
    sql = (ROOT / init_scripts[0]).read_text()
    for database in ("inventory", "orders", "loyalty"):
        assert f"CREATE DATABASE {database};" in sql


def test_services_run_the_commands_make_up_runs(compose: dict[str, Any]) -> None:
    for name in SERVICES:
        assert compose["services"][name]["command"] == ["python", "-m", name]


def test_services_restart_unless_stopped_as_make_up_does(compose: dict[str, Any]) -> None:
    """compose restarts a service that dies and leaves one stopped on purpose, like the `make up`
    supervisor (orderflow_kit.supervision)."""
    for name in SERVICES:
        assert compose["services"][name]["restart"] == "unless-stopped", name


def test_only_the_gateway_gets_the_token_secret_and_only_from_the_environment(compose: dict[str, Any]) -> None:
    """No secret is committed: compose refuses to start the gateway without ORDERFLOW_JWT_SECRET."""
    environments = {name: dict(compose["services"][name]["environment"]) for name in SERVICES}
    secret = environments["gateway"].pop("ORDERFLOW_JWT_SECRET")
    assert secret.startswith("${ORDERFLOW_JWT_SECRET:?")
    assert environments["gateway"] == environments["orders"]
    assert not any("ORDERFLOW_JWT_SECRET" in environment for environment in environments.values())
