"""The reservation sweeper: a background task of the inventory process that gives back the stock
of reservations never confirmed within the TTL (the orders process died between reserving and
recording the order, so no OrderCreated will ever confirm them).

Every inventory replica runs one; they share the work safely (reservations.expire_reservations).
It outlives outages: a failed sweep is logged and tried again at the next tick."""

import asyncio
import uuid
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.reservations import expire_reservations
from orderflow_kit.failures import describe, is_dependency_failure

log = structlog.get_logger()


async def sweep_expired_reservations(
    engine: AsyncEngine, *, ttl_seconds: float, every_seconds: float, batch_size: int
) -> None:
    """Run until cancelled: every `every_seconds`, expire what is older than the TTL, in batches."""
    ttl = timedelta(seconds=ttl_seconds)
    while True:
        try:
            while len(expired := await expire_reservations(engine, ttl=ttl, limit=batch_size)) == batch_size:
                _log_expired(expired)
            _log_expired(expired)
        except Exception as error:
            # An outage is expected and needs no traceback; anything else is a bug to see.
            log.warning("reservation sweep failed", error=describe(error), exc_info=not is_dependency_failure(error))
        await asyncio.sleep(every_seconds)


def _log_expired(order_ids: list[uuid.UUID]) -> None:
    for order_id in order_ids:
        log.warning("reservation expired; stock returned", order_id=str(order_id))
