"""Announcing a confirmation: a StockConfirmed event on `orders.stock_confirmed`, published after
the confirmation committed and before the OrderCreated that caused it is acked (the pattern of
loyalty.announcing_points).

Every copy of the announcement is the same event, because its ids derive from the order id:
`Nats-Msg-Id` is `stock-confirmed:<order_id>` (the broker drops a second publish within its
duplicate window) and `ce-id` is a UUID derived from the order id (uuid5), which live feeds dedupe
on beyond that window. So a crash between the commit and the publish loses nothing: the
OrderCreated comes back unacked, finds the reservation CONFIRMED (`duplicate`) and announces it
again. Its `confirmed_at` is when it was announced: a re-announcement carries its own time.

Nothing in the pipeline consumes it: it is for live feeds (the order page's "stock confirmed").
The request id and trace context of the OrderCreated are carried along."""

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind

from inventory.reservations import Confirmation
from orderflow_contracts.cloudevents import REQUEST_ID, TRACEPARENT, CloudEvent
from orderflow_contracts.events import ConfirmedLineV1, OrderCreated, StockConfirmedV1
from orderflow_contracts.streams import ORDERS_STREAM, STOCK_CONFIRMED_SUBJECT
from orderflow_kit import tracing

EVENT_SOURCE = "orderflow/inventory"
# Fixed for good: every ce-id ever published derives from it.
_EVENT_IDS = uuid.uuid5(uuid.NAMESPACE_URL, f"https://orderflow.dev/events/{StockConfirmedV1.TYPE}")


def stock_confirmed_event(
    created: OrderCreated,
    confirmation: Confirmation,
    received_headers: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> CloudEvent:
    """The announcement that `created`'s order has its stock confirmed."""
    carried = {name: value for name, value in (received_headers or {}).items() if name in (REQUEST_ID, TRACEPARENT)}
    order = created.order
    at = now or datetime.now(UTC)
    payload = StockConfirmedV1(
        order_id=order.order_id,
        customer_id=order.customer_id,
        items=[ConfirmedLineV1(sku=line.sku, quantity=line.quantity) for line in order.items],
        late=confirmation is Confirmation.CONFIRMED_LATE,
        confirmed_at=at,
    )
    return CloudEvent(
        id=str(uuid.uuid5(_EVENT_IDS, str(order.order_id))),
        type=StockConfirmedV1.TYPE,
        source=EVENT_SOURCE,
        time=at,
        data=payload.model_dump_json().encode(),
        subject=str(order.order_id),
        extensions=carried,
    )


def publish_id(created: OrderCreated) -> str:
    """The broker's dedupe key: one per order."""
    return f"stock-confirmed:{created.order.order_id}"


async def announce(
    js: JetStreamContext, created: OrderCreated, confirmation: Confirmation, received_headers: Mapping[str, str] | None
) -> None:
    """Publish the announcement and wait for the broker's ack (a duplicate ack counts: it has it),
    in a send span of the OrderCreated's trace (the caller runs it in that message's context)."""
    event = stock_confirmed_event(created, confirmation, received_headers)
    headers = event.to_headers(publish_id(created))
    order_id = str(created.order.order_id)
    with tracing.span(
        f"send {STOCK_CONFIRMED_SUBJECT}",
        kind=SpanKind.PRODUCER,
        attributes=tracing.messaging_attributes(
            "send", STOCK_CONFIRMED_SUBJECT, message_id=event.id, operation_name="announce", order_id=order_id
        ),
    ):
        tracing.inject(headers)
        await js.publish(STOCK_CONFIRMED_SUBJECT, event.data, headers=headers, stream=ORDERS_STREAM)
