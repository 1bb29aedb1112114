"""What the orders integration tests share: fresh databases, the orders service (and the real
inventory) served in-process through their real wiring, a fake inventory for failure cases,
and readers of the outbox and of the ORDERS stream."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import nats
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

import inventory.main
import orders.main
from inventory.settings import InventorySettings
from orderflow_contracts.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from orderflow_contracts.streams import ORDERS_STREAM
from orderflow_kit.db import migrate
from orderflow_kit.grpc_client import ErrorDetail, error_detail
from orderflow_kit.nats import ensure_streams
from orders.settings import OrdersSettings

TIMEOUT = 10.0

# The catalog of the real inventory the tests order from.
CATALOG = [
    {"sku": "TEST-MUG", "name": "Test mug", "price_cents": 1290, "stock": 100_000},
    {"sku": "TEST-LAMP", "name": "Test lamp", "price_cents": 5490, "stock": 100_000},
    {"sku": "TEST-RARE", "name": "Test rarity", "price_cents": 99_900, "stock": 1},
]


def write_catalog(path: Path) -> Path:
    path.write_text(json.dumps(CATALOG))
    return path


async def new_database(server_url: str, prefix: str, migrations: Path) -> str:
    """A fresh, migrated database on the test server; tests never share data by accident."""
    name = f"{prefix}_test_{uuid.uuid4().hex[:12]}"
    await migrate(server_url, name, migrations)
    return name


async def drop_database(server_url: str, name: str) -> None:
    server = make_url(server_url.replace("postgres://", "postgresql://", 1))
    dsn = server.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def eventually(condition: Callable[[], Awaitable[bool]], within: float = TIMEOUT) -> None:
    """Poll `condition` until it holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"condition not met within {within}s"
        await asyncio.sleep(0.02)


async def rpc_error(call: Awaitable[object]) -> tuple[grpc.StatusCode, ErrorDetail]:
    """The status code and ErrorInfo of a call that must fail."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code(), error_detail(error)
    raise AssertionError("the call succeeded")


async def _serving_ok(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        except grpc.aio.AioRpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


@asynccontextmanager
async def _serving(run: Callable[[asyncio.Event], Coroutine[Any, Any, None]], address: str) -> AsyncIterator[str]:
    stop = asyncio.Event()
    server = asyncio.create_task(run(stop))

    async def ready() -> bool:
        if server.done():
            server.result()  # a failed start raises its own error here
            raise AssertionError("the server stopped before it served")
        return await _serving_ok(address)

    try:
        await eventually(ready)
        yield address
    finally:
        stop.set()
        await server


def serving_orders(settings: OrdersSettings) -> AbstractAsyncContextManager[str]:
    """The orders service, relay included, in this event loop (orders.main.run) until the block ends."""
    return _serving(lambda stop: orders.main.run(settings, stop), f"{settings.listen_host}:{settings.orders_port}")


def serving_inventory(settings: InventorySettings) -> AbstractAsyncContextManager[str]:
    """The REAL inventory service in this event loop (inventory.main.run) until the block ends."""
    return _serving(
        lambda stop: inventory.main.run(settings, stop), f"{settings.listen_host}:{settings.inventory_port}"
    )


@dataclass
class FakeInventory(inventory_pb2_grpc.InventoryServiceServicer):  # type: ignore[misc]
    """An InventoryService that answers ReserveStock after `reserve_delay` seconds at one price,
    and records every order id it was asked to reserve or release (the rest is UNIMPLEMENTED)."""

    reserve_delay: float = 0.0
    unit_price_cents: int = 1000
    reserve_requests: list[str] = field(default_factory=list)
    release_requests: list[str] = field(default_factory=list)

    async def ReserveStock(self, request: inventory_pb2.ReserveStockRequest, context: Any) -> inventory_pb2.Reservation:
        self.reserve_requests.append(request.order_id)
        await asyncio.sleep(self.reserve_delay)
        lines = [
            inventory_pb2.ReservedLine(sku=item.sku, quantity=item.quantity, unit_price_cents=self.unit_price_cents)
            for item in request.items
        ]
        return inventory_pb2.Reservation(order_id=request.order_id, lines=lines, currency="EUR")

    async def ReleaseStock(
        self, request: inventory_pb2.ReleaseStockRequest, context: Any
    ) -> inventory_pb2.ReleaseStockResponse:
        self.release_requests.append(request.order_id)
        return inventory_pb2.ReleaseStockResponse(released=True)


@asynccontextmanager
async def serving_fake_inventory(fake: FakeInventory) -> AsyncIterator[str]:
    server = grpc.aio.server()
    inventory_pb2_grpc.add_InventoryServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def count_rows(engine: AsyncEngine, order_id: str) -> dict[str, int]:
    """How many rows each table holds for one order."""
    async with engine.connect() as connection:
        return {
            table: int(
                await connection.scalar(text(f"SELECT count(*) FROM {table} WHERE {column} = :id"), {"id": order_id})
                or 0
            )
            for table, column in (("orders", "order_id"), ("order_lines", "order_id"), ("outbox", "aggregate_id"))
        }


async def pending_events(engine: AsyncEngine, event_ids: list[str]) -> int:
    async with engine.connect() as connection:
        pending = await connection.scalar(
            text("SELECT count(*) FROM outbox WHERE id = ANY(CAST(:ids AS uuid[])) AND published_at IS NULL"),
            {"ids": event_ids},
        )
    return int(pending or 0)


async def event_ids_of(engine: AsyncEngine, order_ids: list[str]) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT id FROM outbox WHERE aggregate_id = ANY(CAST(:ids AS uuid[]))"), {"ids": order_ids}
        )
        return [str(row.id) for row in rows]


@asynccontextmanager
async def jetstream(url: str) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        await ensure_streams(js)
        yield js
    finally:
        await client.close()


async def next_stream_seq(js: JetStreamContext) -> int:
    """The sequence the ORDERS stream gives its next message: read the stream from here on."""
    return int((await js.stream_info(ORDERS_STREAM)).state.last_seq) + 1


async def stream_messages(js: JetStreamContext, first_seq: int, event_ids: set[str]) -> list[RawStreamMsg]:
    """The messages of the ORDERS stream from `first_seq` on whose ce-id is one of `event_ids`."""
    last_seq = int((await js.stream_info(ORDERS_STREAM)).state.last_seq)
    found = []
    for seq in range(first_seq, last_seq + 1):
        try:
            message = await js.get_msg(ORDERS_STREAM, seq)
        except NotFoundError:
            continue
        if (message.headers or {}).get("ce-id") in event_ids:
            found.append(message)
    return found
