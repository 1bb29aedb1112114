"""The write side of the transactional outbox: an event is stored in the SAME transaction as the
change it announces, so either both commit or neither does; the relay (outbox_relay.py) publishes
it afterwards. The statement that records the change writes the event's `outbox` row too, and
`pg_notify(NOTIFY_CHANNEL, '')` in that transaction wakes the relay the moment it commits
(placing_orders: one statement for an order, its lines and its event).

A published row is kept for a retention (for audit and investigations), then housekeeping purges
it; a row not yet published is never purged."""

import uuid
from datetime import datetime, timedelta

from sqlmodel import col

from orderflow_contracts.cloudevents import REQUEST_ID, TRACEPARENT, CloudEvent
from orderflow_kit.housekeeping import Retention
from orderflow_kit.request_context import current_traceparent, request_id_var
from orders.models import OutboxEvent

NOTIFY_CHANNEL = "outbox"
EVENT_SOURCE = "orderflow/orders"


def new_event(event_type: str, subject: str, data: bytes, time: datetime) -> CloudEvent:
    """A CloudEvent with a fresh id, carrying the current request's id and trace context along:
    made inside `creating_event`'s span, that context is the event's creation context."""
    context = {TRACEPARENT: current_traceparent(), REQUEST_ID: request_id_var.get()}
    return CloudEvent(
        id=str(uuid.uuid4()),
        type=event_type,
        source=EVENT_SOURCE,
        time=time,
        data=data,
        subject=subject,
        extensions={name: value for name, value in context.items() if value},
    )


def published_events(keep: timedelta) -> Retention:
    """The rows housekeeping may purge: published more than `keep` ago. A pending row's
    `published_at` is NULL, which is never older than anything."""
    return Retention(
        "published outbox events",
        OutboxEvent,
        key=col(OutboxEvent.id),
        stamp=col(OutboxEvent.published_at),
        keep=keep,
    )
