"""Announcing an award: a PointsAwarded event on `orders.points_awarded`, published after the
award committed and before the OrderCreated that earned it is acked.

Every copy of the announcement is the same event, because its ids derive from the order id:
- `Nats-Msg-Id` is `points-awarded:<order_id>`: within the broker's duplicate window (2 minutes)
  a second publish is dropped;
- `ce-id` is a UUID derived from the order id (uuid5): a consumer of the event dedupes on it
  beyond that window;
- the payload comes from the ledger entry, so it is the same whenever it is rebuilt.

So a crash between the commit and the publish loses nothing: the OrderCreated comes back (it was
not acked), finds its dedupe row, and the same event is published from the ledger; if it had gone
out already, the broker drops it. A replay of the OrderCreated days later publishes a copy again
(same ce-id): points_awarded consumers must dedupe on ce-id.

The request id and trace context of the OrderCreated are carried along, so one request id leads
from the order to its points."""

import uuid
from collections.abc import Mapping

from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind

from loyalty.awarding_points import Award
from orderflow_contracts.cloudevents import REQUEST_ID, TRACEPARENT, CloudEvent
from orderflow_contracts.events import PointsAwardedV1
from orderflow_contracts.streams import ORDERS_STREAM, POINTS_AWARDED_SUBJECT
from orderflow_kit import tracing

EVENT_SOURCE = "orderflow/loyalty"
# Fixed for good: every ce-id ever published derives from it.
_EVENT_IDS = uuid.uuid5(uuid.NAMESPACE_URL, f"https://orderflow.dev/events/{PointsAwardedV1.TYPE}")


def points_awarded_event(award: Award, received_headers: Mapping[str, str] | None = None) -> CloudEvent:
    """The announcement of `award`; `received_headers` (the OrderCreated's) lend it their request
    id and trace context."""
    carried = {name: value for name, value in (received_headers or {}).items() if name in (REQUEST_ID, TRACEPARENT)}
    payload = PointsAwardedV1(
        order_id=award.order_id,
        customer_id=award.customer_id,
        points=award.points,
        balance_after=award.balance_after,
        awarded_at=award.awarded_at,
    )
    return CloudEvent(
        id=str(uuid.uuid5(_EVENT_IDS, str(award.order_id))),
        type=PointsAwardedV1.TYPE,
        source=EVENT_SOURCE,
        time=award.awarded_at,
        data=payload.model_dump_json().encode(),
        subject=str(award.order_id),
        extensions=carried,
    )


def publish_id(award: Award) -> str:
    """The broker's dedupe key: one per order."""
    return f"points-awarded:{award.order_id}"


async def announce(js: JetStreamContext, award: Award, received_headers: Mapping[str, str] | None) -> None:
    """Publish the announcement and wait for the broker's ack (a duplicate ack counts: it has it).

    With tracing on, in a send span, a child of the OrderCreated's process span (the caller runs
    it in that message's context): the announcement carries that span's context, so whoever
    consumes it continues the order's trace."""
    event = points_awarded_event(award, received_headers)
    headers = event.to_headers(publish_id(award))
    with tracing.span(
        f"send {POINTS_AWARDED_SUBJECT}",
        kind=SpanKind.PRODUCER,
        attributes=tracing.messaging_attributes(
            "send", POINTS_AWARDED_SUBJECT, message_id=event.id, operation_name="announce", order_id=str(award.order_id)
        ),
    ):
        tracing.inject(headers)
        await js.publish(POINTS_AWARDED_SUBJECT, event.data, headers=headers, stream=ORDERS_STREAM)
