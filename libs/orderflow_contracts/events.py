"""Event payloads. Each type is a versioned pydantic model; a breaking change is a new version
(a new model and a new `ce-type`), never an edit of an existing one. Every `ce-type` is
`orderflow.<service>.<event>.v<N>` (EVENT_TYPE_PATTERN); docs/events.md says how a new version
rolls out."""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from orderflow_contracts.cloudevents import CloudEvent, MalformedEvent
from orderflow_contracts.identifiers import (
    CUSTOMER_ID_PATTERN,
    MAX_CENTS,
    MAX_ORDER_LINES,
    MAX_SKU_QUANTITY,
    SKU_PATTERN,
)

# BIGINT: no count of points is larger.
MAX_POINTS = 2**63 - 1

# The versioning rule: the service that publishes it, the event, its version.
EVENT_TYPE_PATTERN = r"^orderflow\.(?P<service>[a-z]+)\.(?P<event>[a-z_]+)\.v(?P<version>[1-9][0-9]*)$"
_event_type = re.compile(EVENT_TYPE_PATTERN)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class EventPayload(_Payload):
    """The payload of one version of one event type; `TYPE` is its ce-type."""

    TYPE: ClassVar[str]


class OrderLineV1(_Payload):
    sku: Annotated[str, StringConstraints(pattern=SKU_PATTERN)]
    quantity: Annotated[int, Field(gt=0, le=MAX_SKU_QUANTITY, strict=True)]
    unit_price_cents: Annotated[int, Field(ge=0, le=MAX_CENTS, strict=True)]


class OrderCreatedV1(EventPayload):
    TYPE: ClassVar[str] = "orderflow.orders.order_created.v1"

    order_id: UUID
    customer_id: Annotated[str, StringConstraints(pattern=CUSTOMER_ID_PATTERN)]
    items: Annotated[list[OrderLineV1], Field(min_length=1, max_length=MAX_ORDER_LINES)]
    total_cents: Annotated[int, Field(ge=0, le=MAX_CENTS, strict=True)]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    created_at: datetime


@dataclass(frozen=True)
class OrderCreated:
    """An OrderCreated event as a consumer receives it."""

    event_id: str  # the CloudEvent's ce-id: the same across re-publishes and replays
    order: OrderCreatedV1


class PointsAwardedV1(EventPayload):
    """Loyalty awarded an order's points; published once per order (its ce-id and Nats-Msg-Id are
    derived from the order id), after the award committed."""

    TYPE: ClassVar[str] = "orderflow.loyalty.points_awarded.v1"

    order_id: UUID
    customer_id: Annotated[str, StringConstraints(pattern=CUSTOMER_ID_PATTERN)]
    # May be 0: an order under one currency unit earns nothing, and is still announced.
    points: Annotated[int, Field(ge=0, le=MAX_POINTS, strict=True)]
    # The customer's balance right after this award.
    balance_after: Annotated[int, Field(ge=0, le=MAX_POINTS, strict=True)]
    awarded_at: datetime


@dataclass(frozen=True)
class PointsAwarded:
    """A PointsAwarded event as a consumer receives it."""

    event_id: str
    award: PointsAwardedV1


class ConfirmedLineV1(_Payload):
    sku: Annotated[str, StringConstraints(pattern=SKU_PATTERN)]
    quantity: Annotated[int, Field(gt=0, le=MAX_SKU_QUANTITY, strict=True)]


class StockConfirmedV1(EventPayload):
    """Inventory confirmed an order's reservation: its stock is sold for good. Announced once per
    order (ce-id and Nats-Msg-Id derived from the order id) after the confirmation committed; a
    re-announcement (a redelivery after a crash, a replay) is the same event with its own time."""

    TYPE: ClassVar[str] = "orderflow.inventory.stock_confirmed.v1"

    order_id: UUID
    customer_id: Annotated[str, StringConstraints(pattern=CUSTOMER_ID_PATTERN)]
    items: Annotated[list[ConfirmedLineV1], Field(min_length=1, max_length=MAX_ORDER_LINES)]
    # The reservation had expired or been released, and its stock was taken again.
    late: bool = False
    # When inventory announced it, right after the confirmation committed.
    confirmed_at: datetime


@dataclass(frozen=True)
class StockConfirmed:
    """A StockConfirmed event as a consumer receives it."""

    event_id: str
    confirmation: StockConfirmedV1


def read_order_created(headers: dict[str, str] | None, body: bytes) -> OrderCreated:
    """Read a message; raises MalformedEvent or pydantic.ValidationError (both permanent)."""
    event = _json_event(headers, body, OrderCreatedV1.TYPE)
    return OrderCreated(event.id, OrderCreatedV1.model_validate_json(event.data))


def read_points_awarded(headers: dict[str, str] | None, body: bytes) -> PointsAwarded:
    """Read a message; raises MalformedEvent or pydantic.ValidationError (both permanent)."""
    event = _json_event(headers, body, PointsAwardedV1.TYPE)
    return PointsAwarded(event.id, PointsAwardedV1.model_validate_json(event.data))


def read_stock_confirmed(headers: dict[str, str] | None, body: bytes) -> StockConfirmed:
    """Read a message; raises MalformedEvent or pydantic.ValidationError (both permanent)."""
    event = _json_event(headers, body, StockConfirmedV1.TYPE)
    return StockConfirmed(event.id, StockConfirmedV1.model_validate_json(event.data))


def _json_event(headers: dict[str, str] | None, body: bytes, expected_type: str) -> CloudEvent:
    event = CloudEvent.from_message(headers, body)
    if event.type != expected_type:
        raise MalformedEvent(_unsupported_type(event.type, expected_type))
    if not event.content_type.startswith("application/json"):
        raise MalformedEvent(f"unsupported content-type {event.content_type!r} (expected application/json)")
    return event


def _unsupported_type(received: str, expected: str) -> str:
    """Why a reader refuses `received`; another version of the event it reads says so, for whoever
    reads the dead letter: a newer producer is ahead of this consumer (docs/events.md)."""
    refused = f"unsupported ce-type {received!r}"
    got, wanted = _event_type.fullmatch(received), _event_type.fullmatch(expected)
    if got is None or wanted is None or got.group("service", "event") != wanted.group("service", "event"):
        return f"{refused} (expected {expected!r})"
    family = expected.removesuffix(f".v{wanted['version']}")
    return (
        f"{refused}: version v{got['version']} of {family} is unknown here (this consumer reads v{wanted['version']})"
    )
