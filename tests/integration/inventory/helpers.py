"""What the inventory integration tests share: test products with fresh SKUs, reading stock and
reservations, and OrderCreated events for the consumer that confirms reservations."""

import uuid
from datetime import UTC, datetime

from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.stock_conservation import StockCount, count_stock
from orderflow_contracts.cloudevents import CloudEvent
from orderflow_contracts.events import OrderCreatedV1, OrderLineV1
from orderflow_contracts.streams import ORDER_CREATED_SUBJECT, ORDERS_STREAM


async def add_product(engine: AsyncEngine, stock: int, price_cents: int = 1000) -> str:
    """A product with a fresh SKU, so tests sharing a database never touch each other's stock."""
    sku = f"TEST-{uuid.uuid4().hex[:10].upper()}"
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO products (sku, name, price_cents, available, received)"
                " VALUES (:sku, :name, :price, :stock, :stock)"
            ),
            {"sku": sku, "name": f"Test product {sku}", "price": price_cents, "stock": stock},
        )
    return sku


async def available(engine: AsyncEngine, sku: str) -> int:
    async with engine.connect() as connection:
        stock = await connection.scalar(text("SELECT available FROM products WHERE sku = :sku"), {"sku": sku})
    assert isinstance(stock, int)
    return stock


async def reservation_status(engine: AsyncEngine, order_id: uuid.UUID) -> str | None:
    async with engine.connect() as connection:
        status = await connection.scalar(
            text("SELECT status FROM reservations WHERE order_id = :order_id"), {"order_id": order_id}
        )
    assert status is None or isinstance(status, str)
    return status


async def held_since_an_hour(engine: AsyncEngine, *order_ids: uuid.UUID) -> None:
    """Age reservations past any test TTL, instead of waiting for it."""
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE reservations SET created_at = now() - interval '1 hour' WHERE order_id = ANY(:ids)"),
            {"ids": list(order_ids)},
        )


async def restock(engine: AsyncEngine, sku: str, quantity: int) -> None:
    """What an operator does when stock arrives: on the shelf, and counted as received."""
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE products SET available = available + :q, received = received + :q WHERE sku = :sku"),
            {"q": quantity, "sku": sku},
        )


async def stock_of(engine: AsyncEngine, *skus: str) -> dict[str, StockCount]:
    """The stock counts of the test's own products (the module's database holds others too)."""
    return {count.sku: count for count in await count_stock(engine) if count.sku in skus}


def order_created(order_id: uuid.UUID, quantities: dict[str, int]) -> CloudEvent:
    """The OrderCreated event orders would publish for an order with these lines."""
    items = [OrderLineV1(sku=sku, quantity=quantity, unit_price_cents=1000) for sku, quantity in quantities.items()]
    payload = OrderCreatedV1(
        order_id=order_id,
        customer_id="cust-inventory-test",
        items=items,
        total_cents=sum(item.quantity * item.unit_price_cents for item in items),
        currency="EUR",
        created_at=datetime.now(UTC),
    )
    return CloudEvent(
        id=str(uuid.uuid4()),
        type=OrderCreatedV1.TYPE,
        source="tests/inventory",
        time=payload.created_at,
        subject=str(order_id),
        data=payload.model_dump_json().encode(),
    )


async def publish(js: JetStreamContext, event: CloudEvent, *, msg_id: str | None = None) -> int:
    """Publish on orders.created; returns the stream sequence. A `msg_id` other than the ce-id
    makes a second copy of the same event that the broker does not drop."""
    ack = await js.publish(ORDER_CREATED_SUBJECT, event.data, headers=event.to_headers(msg_id), stream=ORDERS_STREAM)
    return ack.seq


async def acked_through(js: JetStreamContext, consumer: str, stream_sequence: int) -> bool:
    """Every message up to `stream_sequence` is acked and nothing is waiting for an ack."""
    info = await js.consumer_info(ORDERS_STREAM, consumer)
    return (
        info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= stream_sequence and not info.num_ack_pending
    )
