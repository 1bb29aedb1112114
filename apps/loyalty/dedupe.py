"""The idempotent-consumer step, the consumer's dedupe policy: remember an event's id in the same
transaction as its effect. It belongs to the handler (award_points' one statement holds it), not
to the kit's consumer around the handler as Watermill's deduplicator does: only inside the
handler's transaction do the dedupe row and the effect commit together or not at all.

The broker is acked only after the commit. So a redelivered, replayed or re-published event (same
ce-id) finds its row and does nothing, and an event whose transaction rolled back is processed
again in full.

A row is needed only as long as a copy of its event can still arrive: housekeeping purges rows
older than the dedupe retention, which the settings check is longer than that horizon."""

from datetime import timedelta

from sqlmodel import col

from loyalty.models import ProcessedEvent
from orderflow_kit.housekeeping import Retention

# Claims every event id of the batch (the CTE `batch` of the caller's statement) and returns the
# ones it claimed: the others were processed before, or appear twice in the batch. It runs in the
# statement that writes the effect (awarding_points), so the two commit together or not at all.
# A concurrent transaction claiming the same id waits on the row lock and then sees the conflict
# (or claims it, if the first one rolled back); ids are claimed in one order everywhere, so two
# batches holding some of the same ids never wait on each other both ways.
CLAIM = """
    INSERT INTO processed_events (event_id) SELECT event_id FROM batch ORDER BY event_id
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
"""


def expired_claims(keep: timedelta) -> Retention:
    """The rows housekeeping may purge: events processed more than `keep` ago."""
    return Retention(
        "processed event ids",
        key=col(ProcessedEvent.event_id),
        stamp=col(ProcessedEvent.processed_at),
        keep=keep,
    )
