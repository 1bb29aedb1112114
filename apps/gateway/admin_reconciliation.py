"""GET /v1/admin/reconciliation (scope admin): the pipeline's guarantees checked against the
services' own databases, through one read RPC each (inventory CheckStockConservation, orders
GetOutboxStatus, loyalty CountAwards) and the broker's backlog for loyalty. The verdicts are
gateway.reconciliation's; this gathers the counts in the order that keeps them comparable."""

import asyncio
from datetime import UTC, datetime

from fastapi import Request
from pydantic import BaseModel, Field

from gateway import reconciliation
from gateway.admin_pipeline import consumer_figures
from gateway.auth import AdminPrincipal, authenticated_router
from gateway.broker import BROKER_FAILURES, broker_errors
from gateway.problem_openapi import problem_responses
from gateway.reconciliation import AwardFigures, InFlight, OutboxFigures, Status, StockFigures
from gateway.routes import PREFIX, UPSTREAM_FAILURES
from gateway.schemas import FromMessage
from gateway.settings import GatewaySettings
from gateway.upstreams import Upstreams, UpstreamsDep
from orderflow_contracts.inventory.v1 import inventory_pb2
from orderflow_contracts.loyalty.v1 import loyalty_pb2
from orderflow_contracts.orders.v1 import orders_pb2
from orderflow_contracts.streams import DEAD_LETTER_STREAM, ORDER_CREATED_SUBJECT, dead_letter_subject

router = authenticated_router(f"{PREFIX}/admin", "admin: pipeline")


class CheckOut(BaseModel):
    name: str = Field(examples=["orders_awarded_once"])
    status: Status = Field(
        description=(
            "ok; catching_up: events still on their way (or parked in dead letters for a replay); "
            "failed: a guarantee is broken."
        )
    )
    summary: str = Field(examples=["every stored order awarded once (1042)"])


class StockCountOut(FromMessage):
    sku: str
    received: int = Field(description="The catalog's stock plus every restock.")
    available: int
    reserved: int
    confirmed: int
    conserved: bool


class ReconciliationOut(BaseModel):
    read_at: datetime
    status: Status = Field(description="The worst of the checks.")
    checks: list[CheckOut]
    products: list[StockCountOut] = Field(description="Inventory's counts, one snapshot.")
    orders_stored: int = Field(description="Orders in the orders database.")
    outbox_pending: int = Field(description="Their events the broker has not acknowledged yet.")
    outbox_oldest_pending_seconds: float
    awards: int = Field(description="Entries in loyalty's ledger: one per award.")
    orders_awarded: int = Field(description="Distinct orders among them.")
    loyalty_backlog: int = Field(description="Events in ORDERS not delivered to loyalty's consumer, or not acked yet.")
    loyalty_dead_letters: int = Field(description="OrderCreated events loyalty gave up on, waiting for a replay.")


@router.get("/reconciliation", responses=problem_responses(*UPSTREAM_FAILURES, *BROKER_FAILURES))
async def reconcile(_admin: AdminPrincipal, upstreams: UpstreamsDep, request: Request) -> ReconciliationOut:
    """Stock conserved, every stored order published, every stored order awarded once: checked now."""
    settings: GatewaySettings = request.app.state.settings
    # Loyalty first, then orders: an award counted is then for an order counted (see gateway.reconciliation).
    awards = await _awards(upstreams)
    outbox_status, stock = await asyncio.gather(
        upstreams.call(upstreams.orders.GetOutboxStatus, orders_pb2.GetOutboxStatusRequest()),
        upstreams.call(upstreams.inventory.CheckStockConservation, inventory_pb2.CheckStockConservationRequest()),
    )
    outbox = OutboxFigures(
        outbox_status.orders_stored, outbox_status.pending_events, outbox_status.oldest_pending_age_ms / 1000
    )
    in_flight = await _in_flight(upstreams, settings, outbox, awards)
    check = reconciliation.awarded_check(awards, outbox, in_flight)
    if check.status is Status.FAILED and reconciliation.settled(outbox, in_flight):
        # Settled after the awards were read: what loyalty awarded meanwhile counts too.
        awards = await _awards(upstreams)
        check = reconciliation.awarded_check(awards, outbox, in_flight)
    checks = [
        reconciliation.stock_check(
            StockFigures(len(stock.products), [count.sku for count in stock.products if not count.conserved])
        ),
        reconciliation.published_check(outbox, settings.reconciliation_lag_seconds),
        check,
    ]
    return ReconciliationOut(
        read_at=datetime.now(UTC),
        status=reconciliation.overall(checks),
        checks=[CheckOut(name=check.name, status=check.status, summary=check.summary) for check in checks],
        products=[StockCountOut.model_validate(count) for count in stock.products],
        orders_stored=outbox.orders_stored,
        outbox_pending=outbox.pending_events,
        outbox_oldest_pending_seconds=outbox.oldest_pending_age_seconds,
        awards=awards.awards,
        orders_awarded=awards.orders_awarded,
        loyalty_backlog=in_flight.consumer_backlog,
        loyalty_dead_letters=in_flight.dead_letters,
    )


async def _awards(upstreams: Upstreams) -> AwardFigures:
    counts = await upstreams.call(upstreams.loyalty.CountAwards, loyalty_pb2.CountAwardsRequest())
    return AwardFigures(counts.awards, counts.orders_awarded)


async def _in_flight(
    upstreams: Upstreams, settings: GatewaySettings, outbox: OutboxFigures, awards: AwardFigures
) -> InFlight:
    """Read after the counts: a backlog of 0 then means loyalty has every event published before them."""
    subject = dead_letter_subject(settings.loyalty_consumer, ORDER_CREATED_SUBJECT)
    js = await upstreams.broker.jetstream()
    with broker_errors():
        consumer, dead_letters = await asyncio.gather(
            consumer_figures(js, settings.loyalty_consumer), js.stream_info(DEAD_LETTER_STREAM, subjects_filter=subject)
        )
    # No consumer yet: whatever loyalty has not awarded is still to be delivered.
    backlog = (
        consumer.pending + consumer.ack_pending
        if consumer.exists
        else max(outbox.orders_stored - awards.orders_awarded, 0)
    )
    return InFlight(backlog, (dead_letters.state.subjects or {}).get(subject, 0))
