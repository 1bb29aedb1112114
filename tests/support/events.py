"""OrderCreated events as the orders service publishes them, for every test that needs one: fresh
ids, one line of the order's total unless told otherwise, broken on request; published, or as a
consumer's handler receives them."""

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

from nats.js import JetStreamContext, api

from orderflow_contracts.cloudevents import TRACEPARENT, CloudEvent
from orderflow_contracts.events import OrderCreated, OrderCreatedV1, read_order_created
from orderflow_contracts.streams import ORDER_CREATED_SUBJECT, ORDERS_STREAM
from orderflow_kit.batches import Received

# The price of each unit of `items`.
UNIT_PRICE_CENTS = 1000


class Order(TypedDict, total=False):
    """What an event's order may be given instead of the defaults (see order_created_payload)."""

    order_id: uuid.UUID | None
    items: Mapping[str, int] | None
    created_at: datetime | None


def order_created_payload(
    customer_id: str = "cust-1", total_cents: int = 2599, **order: Unpack[Order]
) -> dict[str, Any]:
    """An OrderCreated v1 payload, as JSON holds it, for a new order unless `order_id` is given: one
    line (SKU-1, quantity 1) of `total_cents`, or `items` (SKU: quantity) at UNIT_PRICE_CENTS each."""
    items, created_at = order.get("items"), order.get("created_at")
    quantities = {"SKU-1": 1} if items is None else items
    price = total_cents if items is None else UNIT_PRICE_CENTS
    return {
        "order_id": str(order.get("order_id") or uuid.uuid4()),
        "customer_id": customer_id,
        "items": [
            {"sku": sku, "quantity": quantity, "unit_price_cents": price} for sku, quantity in quantities.items()
        ],
        "total_cents": sum(quantity * price for quantity in quantities.values()),
        "currency": "EUR",
        "created_at": (created_at or datetime.now(UTC)).isoformat(),
    }


def order_created(
    customer_id: str = "cust-1",
    total_cents: int = 2599,
    *,
    body: bytes | None = None,
    event_type: str = OrderCreatedV1.TYPE,
    traceparent: str | None = None,
    **order: Unpack[Order],
) -> CloudEvent:
    """An OrderCreated CloudEvent (see order_created_payload) with a fresh ce-id; `body` instead of
    the valid payload and `event_type` instead of its ce-type make a bad one."""
    payload = order_created_payload(customer_id, total_cents, **order)
    return CloudEvent(
        id=str(uuid.uuid4()),
        type=event_type,
        source="orderflow/tests",
        time=datetime.fromisoformat(payload["created_at"]),
        data=json.dumps(payload).encode() if body is None else body,
        subject=payload["order_id"],
        extensions={TRACEPARENT: traceparent} if traceparent else {},
    )


def received(event: CloudEvent) -> Received[OrderCreated]:
    """`event` as a consumer's batch handler gets it."""
    headers = event.to_headers()
    return Received(read_order_created(headers, event.data), headers)


async def publish(js: JetStreamContext, event: CloudEvent, *, msg_id: str | None = None) -> api.PubAck:
    """Publish on orders.created, as orders' relay does; a `msg_id` other than the ce-id makes a
    second copy of the same event that the broker does not drop (a re-publish past its window)."""
    return await js.publish(ORDER_CREATED_SUBJECT, event.data, headers=event.to_headers(msg_id), stream=ORDERS_STREAM)
