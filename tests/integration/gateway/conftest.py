"""The gateway app in-process (httpx over ASGI, with its lifespan running, or uvicorn over real
HTTP) in front of in-test fake services on free ports and the session's real Redis. It verifies
tokens from tests.support.tokens; the client sends none unless a test does. Its rate limits are
generous (tests.support.rate_limits) unless a test sets its own."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from gateway.app import create_app
from gateway.settings import GatewaySettings
from orderflow_devstack.infra import Infrastructure, free_port
from tests.integration.gateway.fakes import Fakes, fake_services
from tests.support.polling import eventually
from tests.support.rate_limits import GENEROUS_RATE_LIMITS
from tests.support.tokens import JWT_SECRET

# Short enough that a hanging fake costs little test time, long enough for a loaded 2-core machine.
DEADLINE_SECONDS = 1.0


@asynccontextmanager
async def client_of(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client,
    ):
        yield client


@asynccontextmanager
async def over_http(app: FastAPI) -> AsyncIterator[str]:
    """`app` served by uvicorn in this event loop until the block ends; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or serving.done(), what="uvicorn started")
        assert not serving.done(), "uvicorn stopped at start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    async with fake_services() as services:
        yield services


@pytest.fixture
def settings(fakes: Fakes, infra: Infrastructure) -> GatewaySettings:
    return GatewaySettings(
        orders_addr=fakes.orders_server.address,
        inventory_addr=fakes.inventory_server.address,
        loyalty_addr=fakes.loyalty_server.address,
        redis_url=infra.redis_url,
        grpc_deadline_seconds=DEADLINE_SECONDS,
        readiness_timeout_seconds=DEADLINE_SECONDS,
        jwt_secret=JWT_SECRET,
    ).model_copy(update=GENEROUS_RATE_LIMITS)


@pytest.fixture
async def gateway(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(create_app(settings)) as client:
        yield client
