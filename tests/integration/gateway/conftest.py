"""The gateway app in-process (httpx over ASGI, with its lifespan running) in front of in-test
fake services on free ports and the session's real Redis. It verifies tokens from
tests.support.tokens; the client sends none unless a test does."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.settings import GatewaySettings
from orderflow_kit.infra import Infrastructure
from tests.integration.gateway.fakes import Fakes, fake_services
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
    )


@pytest.fixture
async def gateway(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(create_app(settings)) as client:
        yield client
