"""Event payloads. Each type is a versioned pydantic model; a breaking change is a new version
(a new model and a new `ce-type`), never an edit of an existing one."""

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
    MAX_QUANTITY,
    SKU_PATTERN,
)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class OrderLineV1(_Payload):
    sku: Annotated[str, StringConstraints(pattern=SKU_PATTERN)]
    quantity: Annotated[int, Field(gt=0, le=MAX_QUANTITY, strict=True)]
    unit_price_cents: Annotated[int, Field(ge=0, le=MAX_CENTS, strict=True)]


class OrderCreatedV1(_Payload):
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


def read_order_created(headers: dict[str, str] | None, body: bytes) -> OrderCreated:
    """Read a message; raises MalformedEvent or pydantic.ValidationError (both permanent)."""
    event = CloudEvent.from_message(headers, body)
    if event.type != OrderCreatedV1.TYPE:
        raise MalformedEvent(f"unsupported ce-type {event.type!r} (expected {OrderCreatedV1.TYPE!r})")
    if not event.content_type.startswith("application/json"):
        raise MalformedEvent(f"unsupported content-type {event.content_type!r} (expected application/json)")
    return OrderCreated(event.id, OrderCreatedV1.model_validate_json(event.data))
