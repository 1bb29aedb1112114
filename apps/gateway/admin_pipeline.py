"""The pipeline's live figures for operators (scope admin), read from the broker alone: how many
OrderCreated and PointsAwarded events ORDERS holds, each durable consumer's backlog, and how many
dead letters wait. A few JetStream requests per call, nothing kept between calls: a client gets
rates (orders/s) from two readings and their `read_at`."""

import asyncio
from datetime import UTC, datetime

import nats.js.errors
from fastapi import Request
from nats.js import JetStreamContext
from pydantic import BaseModel, Field

from gateway.auth import AdminPrincipal, authenticated_router
from gateway.broker import broker_errors
from gateway.problem_openapi import problem_responses
from gateway.routes import PREFIX
from gateway.settings import GatewaySettings
from gateway.upstreams import UpstreamsDep
from orderflow_contracts.streams import (
    DEAD_LETTER_STREAM,
    ORDER_CREATED_SUBJECT,
    ORDERS_STREAM,
    POINTS_AWARDED_SUBJECT,
)

router = authenticated_router(f"{PREFIX}/admin", "admin: pipeline")


class ConsumerFigures(BaseModel):
    name: str = Field(examples=["loyalty"])
    exists: bool = Field(description="False until the service has created its durable consumer.")
    pending: int = Field(description="Events in ORDERS not delivered to it yet.", examples=[0])
    ack_pending: int = Field(description="Delivered, not acknowledged yet (being processed or to be redelivered).")
    redelivered: int = Field(description="Delivered more than once and not acknowledged yet.")


class PipelineFigures(BaseModel):
    read_at: datetime = Field(description="When the broker was asked: rates come from two readings.")
    orders_published: int = Field(
        description=(
            "OrderCreated events ORDERS holds (subject orders.created): every order the outbox relay published, "
            "plus replays of dead letters; the stream keeps 7 days."
        ),
        examples=[1042],
    )
    points_awarded: int = Field(description="PointsAwarded events ORDERS holds (subject orders.points_awarded).")
    consumers: list[ConsumerFigures] = Field(description="The pipeline's durable consumers of ORDERS.")
    dead_letters: int = Field(description="Messages DEAD_LETTERS holds: what consumers gave up on, not replayed yet.")


@router.get("/pipeline", responses=problem_responses(503, 504))
async def pipeline_figures(_admin: AdminPrincipal, upstreams: UpstreamsDep, request: Request) -> PipelineFigures:
    """The pipeline's figures from the broker, now."""
    settings: GatewaySettings = request.app.state.settings
    js = await upstreams.broker.jetstream()
    with broker_errors():
        orders, dead_letters = await asyncio.gather(
            js.stream_info(ORDERS_STREAM, subjects_filter="orders.>"), js.stream_info(DEAD_LETTER_STREAM)
        )
        names = (settings.loyalty_consumer, settings.inventory_consumer)
        consumers = list(await asyncio.gather(*(consumer_figures(js, name) for name in names)))
    subjects = orders.state.subjects or {}
    return PipelineFigures(
        read_at=datetime.now(UTC),
        orders_published=subjects.get(ORDER_CREATED_SUBJECT, 0),
        points_awarded=subjects.get(POINTS_AWARDED_SUBJECT, 0),
        consumers=consumers,
        dead_letters=dead_letters.state.messages,
    )


async def consumer_figures(js: JetStreamContext, name: str) -> ConsumerFigures:
    try:
        info = await js.consumer_info(ORDERS_STREAM, name)
    except nats.js.errors.NotFoundError:
        return ConsumerFigures(name=name, exists=False, pending=0, ack_pending=0, redelivered=0)
    return ConsumerFigures(
        name=name,
        exists=True,
        pending=info.num_pending or 0,
        ack_pending=info.num_ack_pending or 0,
        redelivered=info.num_redelivered or 0,
    )
