"""/healthz says the process answers; /readyz says whether every service does, without hanging,
and whether Redis does (without it the gateway still serves)."""

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings
from orderflow_devstack.infra import free_port
from tests.integration.gateway.conftest import DEADLINE_SECONDS, client_of
from tests.integration.gateway.fakes import Fakes


async def test_healthz_answers_while_the_process_runs(gateway: httpx.AsyncClient, fakes: Fakes) -> None:
    await fakes.orders_server.server.stop(None)

    response = await gateway.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


async def test_readyz_is_200_when_every_dependency_answers(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"orders": "ok", "inventory": "ok", "loyalty": "ok", "redis": "ok"},
    }


@pytest.mark.parametrize("down", ["orders", "inventory", "loyalty"])
async def test_readyz_is_503_when_a_service_is_down(gateway: httpx.AsyncClient, fakes: Fakes, down: str) -> None:
    await getattr(fakes, f"{down}_server").server.stop(None)

    response = await gateway.get("/readyz")

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "NOT_READY"
    assert problem["checks"].pop(down) != "ok"
    assert set(problem["checks"].values()) == {"ok"}
    assert down in problem["detail"]


async def test_readyz_is_200_and_says_what_is_off_when_redis_does_not_answer(settings: GatewaySettings) -> None:
    unreachable = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})

    async with client_of(create_app(unreachable)) as gateway:
        response = await gateway.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {
            "orders": "ok",
            "inventory": "ok",
            "loyalty": "ok",
            "redis": "unavailable (rate limits off, idempotency keys refused)",
        },
    }


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts connections and never says a word."""
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_readyz_answers_in_time_when_dependencies_hang(settings: GatewaySettings, silent_port: int) -> None:
    hanging = settings.model_copy(
        update={"orders_addr": f"127.0.0.1:{silent_port}", "redis_url": f"redis://127.0.0.1:{silent_port}/0"}
    )

    async with client_of(create_app(hanging)) as gateway:
        started = time.monotonic()
        response = await gateway.get("/readyz")
        elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.json()["checks"]["orders"] != "ok"
    assert response.json()["checks"]["redis"].endswith("(rate limits off, idempotency keys refused)")
    assert "redis" not in response.json()["detail"]
    assert elapsed < DEADLINE_SECONDS + 2
