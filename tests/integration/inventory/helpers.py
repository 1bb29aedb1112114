"""What the inventory integration tests share: fresh databases, test products, and the service
served in-process through its real wiring (inventory.main.run) on a free port."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.main import MIGRATIONS, run
from inventory.settings import InventorySettings
from orderflow_kit.db import create_engine, migrate
from orderflow_kit.grpc_client import ErrorDetail, error_detail

TIMEOUT = 10.0


async def new_database(server_url: str) -> str:
    """A fresh, migrated database on the test server; tests never share data by accident."""
    name = f"inventory_test_{uuid.uuid4().hex[:12]}"
    await migrate(server_url, name, MIGRATIONS)
    return name


async def drop_database(server_url: str, name: str) -> None:
    engine = create_engine(server_url, "postgres")
    try:
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


async def add_product(engine: AsyncEngine, stock: int, price_cents: int = 1000) -> str:
    """A product with a fresh SKU, so tests sharing a database never touch each other's stock."""
    sku = f"TEST-{uuid.uuid4().hex[:10].upper()}"
    async with engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO products (sku, name, price_cents, available) VALUES (:sku, :name, :price, :stock)"),
            {"sku": sku, "name": f"Test product {sku}", "price": price_cents, "stock": stock},
        )
    return sku


async def available(engine: AsyncEngine, sku: str) -> int:
    async with engine.connect() as connection:
        stock = await connection.scalar(text("SELECT available FROM products WHERE sku = :sku"), {"sku": sku})
    assert isinstance(stock, int)
    return stock


async def eventually(condition: Callable[[], Awaitable[bool]], within: float = TIMEOUT) -> None:
    """Poll `condition` until it holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"condition not met within {within}s"
        await asyncio.sleep(0.02)


async def health_status(address: str, service: str = "") -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1.0
            )
        except grpc.aio.AioRpcError:
            return int(health_pb2.HealthCheckResponse.UNKNOWN)
    return int(response.status)


@asynccontextmanager
async def serving(settings: InventorySettings) -> AsyncIterator[str]:
    """Run the service in this event loop until the block ends; yields its address."""
    address = f"{settings.listen_host}:{settings.inventory_port}"
    stop = asyncio.Event()
    server = asyncio.create_task(run(settings, stop))

    async def ready() -> bool:
        if server.done():
            server.result()  # a failed start raises its own error here
            raise AssertionError("the server stopped before it served")
        return bool(await health_status(address) == health_pb2.HealthCheckResponse.SERVING)

    try:
        await eventually(ready)
        yield address
    finally:
        stop.set()
        await server


async def rpc_error(call: Awaitable[object]) -> tuple[grpc.StatusCode, ErrorDetail, str]:
    """The status code, ErrorInfo and message of a call that must fail."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code(), error_detail(error), error.details() or ""
    raise AssertionError("the call succeeded")
