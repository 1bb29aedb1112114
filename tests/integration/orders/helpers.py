"""What the orders integration tests share: the real inventory's catalog, a fake inventory for
failure cases, requests and stock look-ups, events staged in the outbox, and readers of the
outbox, of the ORDERS stream and of what is published on the wire."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_contracts.cloudevents import CloudEvent
from orderflow_contracts.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from orderflow_contracts.orders.v1 import orders_pb2
from orderflow_contracts.streams import ORDER_CREATED_SUBJECT, ORDERS_STREAM
from orders.models import OUTBOX
from orders.outbox import NOTIFY_CHANNEL, new_event
from tests.support.databases import scalar
from tests.support.events import order_created

# The catalog of the real inventory the tests order from.
CATALOG = [
    {"sku": "TEST-MUG", "name": "Test mug", "price_cents": 1290, "stock": 100_000},
    {"sku": "TEST-LAMP", "name": "Test lamp", "price_cents": 5490, "stock": 100_000},
    {"sku": "TEST-RARE", "name": "Test rarity", "price_cents": 99_900, "stock": 1},
]


def new_customer() -> str:
    return f"cust-{uuid.uuid4().hex[:12]}"


def create_request(
    customer_id: str, quantities: dict[str, int], *, client_request_id: str | None = None
) -> orders_pb2.CreateOrderRequest:
    items = [orders_pb2.OrderItem(sku=sku, quantity=quantity) for sku, quantity in quantities.items()]
    return orders_pb2.CreateOrderRequest(customer_id=customer_id, items=items, client_request_id=client_request_id)


async def available(inventory: Any, sku: str) -> int:
    """What the real inventory (an InventoryService stub) can still reserve of `sku`."""
    product = await inventory.GetProduct(inventory_pb2.GetProductRequest(sku=sku))
    return int(product.available)


def write_catalog(path: Path) -> Path:
    path.write_text(json.dumps(CATALOG))
    return path


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


def as_orders_makes_it(event: CloudEvent) -> CloudEvent:
    """`event` made by orders' own `new_event`: it carries the current request's id and trace context."""
    return new_event(event.type, str(event.subject), event.data, event.time)


async def stage(engine: AsyncEngine, count: int, *, notify: bool = True) -> list[CloudEvent]:
    """Commit `count` events to the outbox, as placing an order does, with the NOTIFY that wakes
    the relay; without it (`notify=False`), as if the relay's LISTEN connection had missed it."""
    events = [as_orders_makes_it(order_created()) for _ in range(count)]
    async with engine.begin() as connection:
        await connection.execute(
            insert(OUTBOX),
            [
                {
                    "id": uuid.UUID(event.id),
                    "aggregate_id": uuid.UUID(str(event.subject)),
                    "event_type": event.type,
                    "subject": ORDER_CREATED_SUBJECT,
                    "payload": event.data,
                    "headers": event.to_headers(),
                    "created_at": event.time,
                }
                for event in events
            ],
        )
        if notify:
            await connection.execute(select(func.pg_notify(NOTIFY_CHANNEL, "")))
    return events


@asynccontextmanager
async def stalled_order_writes(engine: AsyncEngine) -> AsyncIterator[None]:
    """While open, no order can be recorded: a transaction holds a lock on the outbox that every
    write of an order waits for (reads go on)."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        await connection.execute(text("LOCK TABLE outbox IN SHARE MODE"))
        try:
            yield
        finally:
            await transaction.rollback()


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
    pending = await scalar(
        engine,
        "SELECT count(*) FROM outbox WHERE id = ANY(CAST(:ids AS uuid[])) AND published_at IS NULL",
        ids=event_ids,
    )
    return int(pending or 0)


async def event_ids_of(engine: AsyncEngine, order_ids: list[str]) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT id FROM outbox WHERE aggregate_id = ANY(CAST(:ids AS uuid[]))"), {"ids": order_ids}
        )
        return [str(row.id) for row in rows]


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


@asynccontextmanager
async def published_on_the_wire(nats_url: str) -> AsyncIterator[list[dict[str, str]]]:
    """The headers of every message published on orders.created while the block runs, as a plain
    subscriber sees them: where the broker's dedupe cannot hide a second publish."""
    seen: list[dict[str, str]] = []

    async def record(message: Msg) -> None:
        seen.append(dict(message.headers or {}))

    listener = await nats.connect(nats_url)
    try:
        await listener.subscribe(ORDER_CREATED_SUBJECT, cb=record)
        await listener.flush()
        yield seen
    finally:
        await listener.close()


def copies_seen(on_the_wire: list[dict[str, str]], event_ids: set[str]) -> list[dict[str, str]]:
    """The headers of each copy of the events `event_ids` published."""
    return [headers for headers in on_the_wire if headers.get("ce-id") in event_ids]
