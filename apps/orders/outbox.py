"""The write side of the transactional outbox: an event is stored in the SAME transaction as the
change it announces, so either both commit or neither does; the relay (outbox_relay.py) publishes
it afterwards. The statement that records the change writes the event's `outbox` row too, and
`pg_notify(NOTIFY_CHANNEL, '')` in that transaction wakes the relay the moment it commits
(placing_orders: one statement for an order, its lines and its event).

A published row is kept for a retention (for audit and investigations), then housekeeping purges
it; a row not yet published is never purged. Its backlog is measured on scrape (`outbox_gauges`)
and read with the count of orders for reconciliation (`outbox_status`)."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from orderflow_contracts.cloudevents import REQUEST_ID, TRACEPARENT, CloudEvent
from orderflow_kit.db import backlog_gauges
from orderflow_kit.housekeeping import Retention
from orderflow_kit.metrics import Source
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
        key=col(OutboxEvent.id),
        stamp=col(OutboxEvent.published_at),
        keep=keep,
    )


# Rows pending and the oldest one's age in one look at the partial index on pending rows.
_BACKLOG = text(
    "SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0) "
    "FROM outbox WHERE published_at IS NULL"
)


# Reconciliation: orders stored and the outbox's backlog in one statement, so one snapshot.
_STATUS = text(
    "SELECT (SELECT count(*) FROM orders) AS orders_stored, count(*) AS pending, "
    "coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0) AS oldest_age "
    "FROM outbox WHERE published_at IS NULL"
)


@dataclass(frozen=True)
class OutboxStatus:
    """Every stored order wrote its OrderCreated to the outbox in its own transaction: a stored
    order's event is either pending here or published."""

    orders_stored: int
    pending_events: int
    oldest_pending_age_seconds: float


async def outbox_status(engine: AsyncEngine) -> OutboxStatus:
    """Orders stored and the events still to publish, now (GetOutboxStatus)."""
    async with engine.connect() as connection:
        row = (await connection.execute(_STATUS)).one()
    return OutboxStatus(int(row.orders_stored), int(row.pending), float(row.oldest_age))


def outbox_gauges(engine: AsyncEngine) -> Source:
    """The outbox's backlog, read when Prometheus scrapes: a lag the relay's own counters cannot
    show while it is stuck (or not running at all)."""

    return backlog_gauges(
        engine,
        _BACKLOG,
        waiting=("orderflow_outbox_pending_events", "Outbox events not yet published"),
        oldest_age=(
            "orderflow_outbox_oldest_pending_age_seconds",
            "How long the oldest unpublished outbox event has waited (0 when none waits)",
        ),
    )
