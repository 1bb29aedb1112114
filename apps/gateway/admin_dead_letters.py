"""Dead letters over HTTP, for operators (scope admin): list, show and replay what consumers gave up
on, as `orderflow dlq list / show / replay` do and with the same kit functions
(orderflow_kit.dead_letters): a replay publishes to the original subject with a new Nats-Msg-Id
and the same ce-id, so the consumer's dedupe still protects, then deletes the dead letter."""

import contextlib
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import Body, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway.auth import AdminPrincipal, authenticated_router
from gateway.broker import BROKER_FAILURES, broker_errors
from gateway.problem_openapi import problem_responses
from gateway.problems import Problem
from gateway.routes import PREFIX, require_json
from gateway.upstreams import UpstreamsDep
from orderflow_contracts.streams import MAX_SEQUENCE, MAX_SEQUENCE_AFTER
from orderflow_kit.dead_letters import (
    CONSUMER_NAME_PATTERN,
    DeadLetterNotFound,
    NotReplayable,
    dead_letter_filter,
    get_dead_letter,
    page_of_dead_letters,
    replay_dead_letter,
)

router = authenticated_router(f"{PREFIX}/admin/dead-letters", "admin: dead letters")

Sequence = Annotated[
    int, Path(ge=1, le=MAX_SEQUENCE, description="The dead letter's sequence in DEAD_LETTERS.", examples=[8])
]


class DeadLetterSummary(BaseModel):
    """A dead letter as listed; header values as stored (strings)."""

    sequence: int = Field(description="In DEAD_LETTERS: what to show or replay it by.", examples=[8])
    subject: str = Field(examples=["dlq.loyalty.orders.created"])
    consumer: str | None = Field(description="The consumer that gave up on it.", examples=["loyalty"])
    original_subject: str | None = Field(examples=["orders.created"])
    original_sequence: str | None = Field(description="Its sequence in the original stream.", examples=["1042"])
    reason: str | None = Field(description="permanent or exhausted.", examples=["permanent"])
    deliveries: str | None = Field(examples=["1"])
    ce_id: str | None = Field(
        description="The event's id, kept by a replay.", examples=["5f0c6f1e-8a51-4a43-9a57-0d4f5c3b2a10"]
    )
    traceparent: str | None = Field(description="The trace context of the request that produced the event.")
    first_failure_at: str | None = Field(examples=["2026-11-20T10:16:01.912+00:00"])
    dead_lettered_at: str | None = Field(examples=["2026-11-20T10:16:02.004+00:00"])
    error_class: str | None = Field(examples=["ValidationError"])
    error: str | None = Field(examples=["invalid OrderCreatedV1 payload: 1 validation error ..."])


class DeadLetterDetails(DeadLetterSummary):
    """Everything about a dead letter; the body in exactly one of body, body_text, body_base64."""

    stored_at: datetime | None = Field(description="When DEAD_LETTERS stored it.")
    headers: dict[str, str] = Field(
        description="Every header: the original event's, and the dlq-* ones that say why and where from."
    )
    body: Any = Field(default=None, description="The body, when it is JSON.")
    body_text: str | None = Field(default=None, description="The body, when it is text but not JSON.")
    body_base64: str | None = Field(default=None, description="The body, when it is not text.")


class DeadLetterPage(BaseModel):
    total: int = Field(description="How many dead letters there are (of the consumer, when one is named).")
    subjects: dict[str, int] = Field(
        description="How many each subject (dlq.<consumer>.<original subject>) holds.",
        examples=[{"dlq.loyalty.orders.created": 2, "dlq.inventory.orders.created": 1}],
    )
    dead_letters: list[DeadLetterSummary] = Field(description="Oldest first.")
    next_after: int | None = Field(description="Pass as after for the next page; null on the last page.")


class ReplayIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    payload: dict[str, Any] | None = Field(
        default=None,
        description=(
            "A fixed body to publish instead of the stored one (as `orderflow dlq replay --payload`); "
            "the stored body when left out."
        ),
        examples=[
            {
                "order_id": "0b7e8f4c-3a64-4c55-9d0e-4b8a2f7c1d23",
                "customer_id": "customer-42",
                "items": [{"sku": "SKU-1", "quantity": 2, "unit_price_cents": 1250}],
                "total_cents": 2500,
                "currency": "EUR",
                "created_at": "2026-11-20T10:15:00Z",
            }
        ],
    )


class Replayed(BaseModel):
    sequence: int = Field(description="The dead letter replayed, now deleted from DEAD_LETTERS.", examples=[8])
    subject: str = Field(description="Where it was published again.", examples=["orders.created"])
    stream: str = Field(examples=["ORDERS"])
    stream_sequence: int = Field(description="Its new sequence in that stream.", examples=[1051])
    ce_id: str | None = Field(
        description="The event's id, the same as before.", examples=["5f0c6f1e-8a51-4a43-9a57-0d4f5c3b2a10"]
    )
    msg_id: str = Field(description="The new Nats-Msg-Id.", examples=["replay.8.ORDERS.1042"])


async def json_if_any_body(request: Request) -> None:
    """The body is optional; one that is there must be JSON (415 otherwise)."""
    if request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers:
        await require_json(request)


@contextlib.contextmanager
def _dead_letter_errors(sequence: int | None = None) -> Iterator[None]:
    with broker_errors():
        try:
            yield
        except DeadLetterNotFound:
            raise Problem(404, "DEAD_LETTER_NOT_FOUND", f"There is no dead letter with sequence {sequence}.") from None
        except NotReplayable as error:
            raise Problem(409, "DEAD_LETTER_NOT_REPLAYABLE", f"{error}; it can only be shown or purged.") from None


@router.get("", responses=problem_responses(422, *BROKER_FAILURES))
async def list_dead_letters(
    _admin: AdminPrincipal,
    upstreams: UpstreamsDep,
    consumer: Annotated[
        str | None, Query(pattern=CONSUMER_NAME_PATTERN, description="Only this consumer's.", examples=["loyalty"])
    ] = None,
    after: Annotated[int, Query(ge=0, le=MAX_SEQUENCE_AFTER, description="Only sequences after this one.")] = 0,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> DeadLetterPage:
    """Dead letters, oldest first, a page at a time, with how many there are (`orderflow dlq list`)."""
    js = await upstreams.broker.jetstream()
    with _dead_letter_errors():
        page = await page_of_dead_letters(js, subject=dead_letter_filter(consumer), after=after, limit=page_size)
    return DeadLetterPage(
        total=page.total,
        subjects=page.counts,
        dead_letters=[DeadLetterSummary.model_validate(letter.summary()) for letter in page.letters],
        next_after=page.next_after,
    )


@router.get("/{sequence}", responses=problem_responses(404, 422, *BROKER_FAILURES))
async def show_dead_letter(sequence: Sequence, _admin: AdminPrincipal, upstreams: UpstreamsDep) -> DeadLetterDetails:
    """One dead letter: its headers and its body (`orderflow dlq show`)."""
    structlog.contextvars.bind_contextvars(dead_letter=sequence)
    js = await upstreams.broker.jetstream()
    with _dead_letter_errors(sequence):
        letter = await get_dead_letter(js, sequence)
    return DeadLetterDetails.model_validate(letter.details())


@router.post(
    "/{sequence}/replay",
    dependencies=[Depends(json_if_any_body)],
    responses=problem_responses(400, 404, 409, 415, 422, *BROKER_FAILURES),
)
async def replay(
    sequence: Sequence,
    _admin: AdminPrincipal,
    upstreams: UpstreamsDep,
    body: Annotated[ReplayIn | None, Body()] = None,
) -> Replayed:
    """Publish a dead letter again to its original subject, with its stored body or a fixed
    `payload`, a new Nats-Msg-Id and the same ce-id, then delete it (`orderflow dlq replay`).
    The consumer's dedupe recognises an event it already processed; one that fails again is
    dead-lettered anew, under a new sequence."""
    structlog.contextvars.bind_contextvars(dead_letter=sequence)
    payload = None if body is None or body.payload is None else json.dumps(body.payload).encode()
    js = await upstreams.broker.jetstream()
    with _dead_letter_errors(sequence):
        replayed = await replay_dead_letter(js, sequence, payload=payload)
    # The access line is the audit trail of who replayed what, with which body, to where.
    structlog.contextvars.bind_contextvars(
        ce_id=replayed.dead_letter.event_id, fixed_payload=payload is not None, replayed_as=replayed.sequence
    )
    return Replayed(
        sequence=replayed.dead_letter.sequence,
        subject=replayed.subject,
        stream=replayed.stream,
        stream_sequence=replayed.sequence,
        ce_id=replayed.dead_letter.event_id,
        msg_id=replayed.msg_id,
    )
