"""The idempotent-consumer step: remember an event's id in the same transaction as its effect.

The dedupe row and the effect commit together or not at all, and the broker is acked only after
the commit. So a redelivered, replayed or re-published event (same ce-id) finds its row and does
nothing, and an event whose transaction rolled back is processed again in full.

A row is needed only as long as a copy of its event can still arrive: housekeeping purges rows
older than the dedupe retention, which the settings check is longer than that horizon."""

from datetime import timedelta

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from loyalty.models import ProcessedEvent
from orderflow_kit.housekeeping import Retention


async def claim_event(connection: AsyncConnection, event_id: str) -> bool:
    """Record `event_id` in the caller's transaction; False when it was processed before.

    A concurrent transaction claiming the same id waits on the row lock and then sees the
    conflict (or claims it, if the first one rolled back)."""
    claimed = await connection.scalar(
        insert(ProcessedEvent)
        .values(event_id=event_id)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(col(ProcessedEvent.event_id))
    )
    return claimed is not None


def expired_claims(keep: timedelta) -> Retention:
    """The rows housekeeping may purge: events processed more than `keep` ago."""
    return Retention(
        "processed event ids",
        ProcessedEvent,
        key=col(ProcessedEvent.event_id),
        stamp=col(ProcessedEvent.processed_at),
        keep=keep,
    )
