"""No Docker engine runs where these tests run, so compose.yaml is checked statically: it must be
a valid Compose file, it must start the services exactly as `make up` does, and every server in it
must require a password that comes from the environment, never from the file."""

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "compose.yaml"
SERVICES = ("inventory", "orders", "loyalty", "gateway")
SECRETS = ("NATS_PASSWORD", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "ORDERFLOW_JWT_SECRET", "GRAFANA_ADMIN_PASSWORD")
# The `observability` profile's (tests/unit/deployment/test_observability_config.py).
OBSERVABILITY = ("jaeger", "prometheus", "grafana")
# ${NAME:?message}: compose refuses to start without NAME; there is no default to fall back on.
REQUIRED_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_]+):\?[^}]*\}")
# scheme://user:password@, where user and password may be ${...} references (which hold colons).
URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://(?:\$\{[^}]*\}|[^\s/@:$])*:(?P<password>(?:\$\{[^}]*\}|[^\s/@$])+)@")
SECRET_KEY = re.compile(r"PASSWORD|PASS$|SECRET|TOKEN|AUTH$")


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
    assert set(compose["services"]) == {"nats", "postgres", "redis", *SERVICES, "web", *OBSERVABILITY}
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
    supervisor (orderflow_devstack.supervision)."""
    for name in SERVICES:
        assert compose["services"][name]["restart"] == "unless-stopped", name


def test_only_the_gateway_gets_the_token_secret_and_only_from_the_environment(compose: dict[str, Any]) -> None:
    """No secret is committed: compose refuses to start the gateway without ORDERFLOW_JWT_SECRET."""
    environments = {name: dict(compose["services"][name]["environment"]) for name in SERVICES}
    secret = environments["gateway"].pop("ORDERFLOW_JWT_SECRET")
    assert secret.startswith("${ORDERFLOW_JWT_SECRET:?")
    assert environments["gateway"] == environments["orders"]
    assert not any("ORDERFLOW_JWT_SECRET" in environment for environment in environments.values())


def test_the_web_app_is_a_client_of_the_gateway_only(compose: dict[str, Any]) -> None:
    """It runs as `make up` runs it, after the gateway serves, with the gateway's URL and token
    secret (its development sign-in) and no server's URL."""
    web = compose["services"]["web"]
    assert web["command"] == ["python", "-m", "web"]
    assert web["restart"] == "unless-stopped"
    assert web["depends_on"] == {"gateway": {"condition": "service_healthy"}}
    environment = dict(web["environment"])
    assert environment.pop("ORDERFLOW_GATEWAY_URL") == "http://gateway:8000"
    assert (
        environment.pop("ORDERFLOW_JWT_SECRET") == compose["services"]["gateway"]["environment"]["ORDERFLOW_JWT_SECRET"]
    )
    assert environment == {}
    assert web["ports"] == ["127.0.0.1:8080:8080"]


def required_variable(value: str) -> str | None:
    """The variable's name when `value` is exactly one required variable, else None."""
    match = REQUIRED_VARIABLE.fullmatch(value)
    return match["name"] if match else None


def flag_value(command: list[str], flag: str) -> str:
    assert flag in command, command
    return command[command.index(flag) + 1]


def test_no_secret_is_written_in_the_file(compose: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text()
    passwords = [match["password"] for match in URL_PASSWORD.finditer(text)]
    assert passwords, "the services' URLs carry credentials"
    assert all(required_variable(password) in SECRETS for password in passwords), passwords
    assert not re.search(r"\$\{[A-Z_]*(PASSWORD|SECRET|TOKEN)[A-Z_]*:?[-=]", text), "a secret with a default"
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_KEY.search(key):
                assert required_variable(str(value)) in SECRETS, (name, key)
        command = service.get("command") or []
        for flag in ("--pass", "--requirepass"):
            if flag in command:
                assert required_variable(flag_value(command, flag)) in SECRETS, (name, flag)


def test_every_server_requires_a_password(compose: dict[str, Any]) -> None:
    servers = compose["services"]
    assert required_variable(flag_value(servers["nats"]["command"], "--pass")) == "NATS_PASSWORD"
    assert flag_value(servers["nats"]["command"], "--user")
    assert required_variable(flag_value(servers["redis"]["command"], "--requirepass")) == "REDIS_PASSWORD"
    postgres = servers["postgres"]["environment"]
    assert required_variable(postgres["POSTGRES_PASSWORD"]) == "POSTGRES_PASSWORD"
    assert "POSTGRES_HOST_AUTH_METHOD" not in postgres  # "trust" would let anyone in


def test_services_log_in_with_the_passwords_from_the_environment(compose: dict[str, Any]) -> None:
    for name in SERVICES:
        environment = compose["services"][name]["environment"]
        for setting, secret in (
            ("ORDERFLOW_NATS_URL", "NATS_PASSWORD"),
            ("ORDERFLOW_POSTGRES_URL", "POSTGRES_PASSWORD"),
            ("ORDERFLOW_REDIS_URL", "REDIS_PASSWORD"),
        ):
            match = URL_PASSWORD.match(environment[setting])
            assert match is not None, (name, setting)
            assert required_variable(match["password"]) == secret, (name, setting)


def test_the_env_example_names_every_secret_with_a_placeholder_and_env_is_ignored() -> None:
    example = dict(
        line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines() if line and line[0] != "#"
    )
    assert set(SECRETS) <= set(example)
    assert {example[secret] for secret in SECRETS} == {"replace-me"}
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
