"""Reconciliation: the pipeline's guarantees checked against the services' own counts, not the
broker's. Plain data in, verdicts out (the route, gateway.admin_reconciliation, gathers the counts).

Three checks, each `ok`, `catching_up` (moving towards ok: events in flight, or parked in dead
letters for a replay) or `failed` (a guarantee is broken, whatever happens next):

- **stock conserved**: inventory's counts, one snapshot: every product's received units are
  available, reserved or confirmed.
- **every stored order published**: the outbox holds an order's OrderCreated from the order's own
  transaction until the broker acks it; a row pending longer than the lag allowance is late.
- **every stored order awarded once**: loyalty's ledger has one entry per order (entries ==
  distinct orders), and as many orders as orders stored. The counts come from different databases
  at different moments; the route reads loyalty's first, so an award it counts is for an order
  stored by the time orders counts (an order commits before its event exists): fewer awards than
  orders is normal while events travel, more is never."""

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    OK = "ok"
    CATCHING_UP = "catching_up"
    FAILED = "failed"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    summary: str


@dataclass(frozen=True)
class StockFigures:
    products: int
    # The SKUs whose counts break the equation.
    unconserved: list[str]


@dataclass(frozen=True)
class OutboxFigures:
    orders_stored: int
    pending_events: int
    oldest_pending_age_seconds: float


@dataclass(frozen=True)
class AwardFigures:
    awards: int
    orders_awarded: int


@dataclass(frozen=True)
class InFlight:
    """What is still on its way to loyalty: events in its consumer's backlog, and OrderCreated
    events loyalty gave up on (its dead letters), which a replay brings back."""

    consumer_backlog: int
    dead_letters: int


STOCK_CONSERVED = "stock_conserved"
ORDERS_PUBLISHED = "orders_published"
ORDERS_AWARDED_ONCE = "orders_awarded_once"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def stock_check(stock: StockFigures) -> Check:
    if stock.unconserved:
        shown = ", ".join(stock.unconserved[:10])
        return Check(STOCK_CONSERVED, Status.FAILED, f"stock not conserved for {shown}")
    return Check(STOCK_CONSERVED, Status.OK, f"stock conserved for every product ({stock.products})")


def published_check(outbox: OutboxFigures, lag_allowance_seconds: float) -> Check:
    if outbox.pending_events == 0:
        return Check(ORDERS_PUBLISHED, Status.OK, f"every stored order published ({outbox.orders_stored})")
    oldest = outbox.oldest_pending_age_seconds
    waiting = f"{_plural(outbox.pending_events, 'event')} to publish, the oldest for {oldest:.1f} s"
    if oldest > lag_allowance_seconds:
        return Check(ORDERS_PUBLISHED, Status.FAILED, f"{waiting}: later than {lag_allowance_seconds:g} s")
    return Check(ORDERS_PUBLISHED, Status.CATCHING_UP, waiting)


def awarded_check(awards: AwardFigures, outbox: OutboxFigures, in_flight: InFlight) -> Check:
    """Duplicates and awards for orders never stored are failures; a shortfall is catching up
    while anything is on its way to loyalty (outbox, backlog, dead letters), else a failure. The
    route reads the awards again before calling a settled shortfall (`settled`)."""
    twice = awards.awards - awards.orders_awarded
    if twice > 0:
        return Check(ORDERS_AWARDED_ONCE, Status.FAILED, f"{_plural(twice, 'award')} for orders already awarded")
    stored = outbox.orders_stored
    if awards.orders_awarded > stored:
        extra = awards.orders_awarded - stored
        return Check(ORDERS_AWARDED_ONCE, Status.FAILED, f"{_plural(extra, 'award')} for orders that were never stored")
    missing = stored - awards.orders_awarded
    if missing == 0:
        return Check(ORDERS_AWARDED_ONCE, Status.OK, f"every stored order awarded once ({stored})")
    short = f"{_plural(missing, 'order')} not awarded yet"
    if in_flight.dead_letters:
        parked = _plural(in_flight.dead_letters, "dead letter")
        return Check(ORDERS_AWARDED_ONCE, Status.CATCHING_UP, f"{short}; loyalty has {parked} waiting for a replay")
    if not settled(outbox, in_flight):
        return Check(ORDERS_AWARDED_ONCE, Status.CATCHING_UP, f"{short}: on their way to loyalty")
    return Check(ORDERS_AWARDED_ONCE, Status.FAILED, f"{short}, and nothing is on its way to loyalty")


def settled(outbox: OutboxFigures, in_flight: InFlight) -> bool:
    """Nothing left to publish or to deliver to loyalty."""
    return outbox.pending_events == 0 and in_flight.consumer_backlog == 0


def overall(checks: list[Check]) -> Status:
    statuses = {check.status for check in checks}
    if Status.FAILED in statuses:
        return Status.FAILED
    if Status.CATCHING_UP in statuses:
        return Status.CATCHING_UP
    return Status.OK
