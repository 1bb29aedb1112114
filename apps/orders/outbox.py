"""The write side of the transactional outbox: an event is stored in the SAME transaction as the
change it announces, so either both commit or neither does; the relay (outbox_relay.py) publishes
it afterwards. `NOTIFY outbox` in that transaction wakes the relay the moment it commits.

A published row is kept for a retention (for audit and investigations), then housekeeping purges
it; a row not yet published is never purged."""

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from orderflow_contracts.cloudevents import REQUEST_ID, TRACEPARENT, CloudEvent
from orderflow_kit.housekeeping import Retention
from orderflow_kit.request_context import request_id_var, traceparent_var
from orders.models import OutboxEvent

NOTIFY_CHANNEL = "outbox"
EVENT_SOURCE = "orderflow/orders"


def new_event(event_type: str, subject: str, data: bytes, time: datetime) -> CloudEvent:
    """A CloudEvent with a fresh id, carrying the current request's id and trace context along."""
    context = {TRACEPARENT: traceparent_var.get(), REQUEST_ID: request_id_var.get()}
    return CloudEvent(
        id=str(uuid.uuid4()),
        type=event_type,
        source=EVENT_SOURCE,
        time=time,
        data=data,
        subject=subject,
        extensions={name: value for name, value in context.items() if value},
    )


async def add_to_outbox(
    session: AsyncSession, event: CloudEvent, *, aggregate_id: uuid.UUID, nats_subject: str
) -> None:
    """Stage `event` in the caller's open transaction; it is published only if that commits."""
    session.add(
        OutboxEvent(
            id=uuid.UUID(event.id),
            aggregate_id=aggregate_id,
            event_type=event.type,
            subject=nats_subject,
            payload=event.data,
            headers=event.to_headers(),
            created_at=event.time,
        )
    )
    await session.exec(select(func.pg_notify(NOTIFY_CHANNEL, "")))


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
