"""orderflow's events as an AsyncAPI 3 document, committed as docs/asyncapi.json: every stream,
subject and message, and which service sends or receives each. Built from the contracts: subjects
and streams from orderflow_contracts.streams, each payload's JSON Schema from its pydantic model
(orderflow_contracts.events), the CloudEvents headers from orderflow_contracts.cloudevents.
`make docs` writes it (`python -m orderflow_contracts.asyncapi_document`); tests fail when the
committed one differs, and when the services send other headers than it says (docs/events.md).

Not FastStream's generator (`faststream docs gen`, AsyncAPI 3.0.0 by default): it describes a
FastStream app's own subscribers and publishers from their handlers' types, and orderflow
publishes with nats-py (the outbox relay, the announcements, dead letters, replays) while its
consumers' payload is what their own reader makes of headers and body, or the error that makes a
message unreadable (a body that is not JSON must still be dead-lettered). It also
gives every endpoint a channel of its own, so one subject would appear once per reader, and
documents no message headers, where the CloudEvents attributes travel."""

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

from pydantic.json_schema import models_json_schema

from orderflow_contracts.cloudevents import NATS_MSG_ID, REQUEST_ID, REQUIRED_HEADERS, SPEC_VERSION, TRACEPARENT
from orderflow_contracts.events import (
    EVENT_TYPE_PATTERN,
    EventPayload,
    OrderCreatedV1,
    PointsAwardedV1,
    StockConfirmedV1,
)
from orderflow_contracts.streams import (
    DEAD_LETTER_STREAM,
    ORDER_CREATED_SUBJECT,
    ORDERS_STREAM,
    POINTS_AWARDED_SUBJECT,
    STOCK_CONFIRMED_SUBJECT,
)

ASYNCAPI_VERSION: Final = "3.0.0"
_SCHEMAS: Final = "#/components/schemas/"


@dataclass(frozen=True)
class Event:
    """One event type: the subject of ORDERS it travels on, its payload, who publishes it."""

    name: str
    subject: str
    payload: type[EventPayload]
    producer: str  # the service; its events' ce-source is orderflow/<producer>
    summary: str

    @property
    def channel(self) -> str:
        return self.name[0].lower() + self.name[1:]

    @property
    def message(self) -> str:
        return self.payload.__name__


EVENTS: Final = (
    Event(
        "OrderCreated",
        ORDER_CREATED_SUBJECT,
        OrderCreatedV1,
        "orders",
        "An order was placed: its stock is reserved, and the order and this event committed together.",
    ),
    Event(
        "StockConfirmed",
        STOCK_CONFIRMED_SUBJECT,
        StockConfirmedV1,
        "inventory",
        "Inventory confirmed an order's reservation: its stock is sold for good. For live feeds; nothing in "
        "the pipeline consumes it.",
    ),
    Event(
        "PointsAwarded",
        POINTS_AWARDED_SUBJECT,
        PointsAwardedV1,
        "loyalty",
        "Loyalty awarded an order's points. For live feeds; nothing in the pipeline consumes it.",
    ),
)

DEAD_LETTERS: Final = "deadLetters"
DEAD_LETTER: Final = "DeadLetter"
# The headers a dead letter adds to the original message's (orderflow_kit.dead_letters writes them).
DEAD_LETTER_HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "dlq-reason": "`permanent` (the message itself is bad: never retried) or `exhausted` (every delivery "
        "up to max_deliver failed).",
        "dlq-error": "The last error, one line of ASCII, at most 1000 characters.",
        "dlq-error-class": "Its class (`MalformedEvent`, `ValidationError`, `OperationalError`, ...): what to "
        "group failures by.",
        "dlq-consumer": "The durable consumer that gave up.",
        "dlq-stream": "The stream the original is in.",
        "dlq-stream-sequence": "Its sequence there.",
        "dlq-subject": "Its subject: where a replay publishes it again.",
        "dlq-deliveries": "How many times the consumer got it.",
        "dlq-first-failure-at": "When it first failed (RFC 3339).",
        "dlq-at": "When it was dead-lettered (RFC 3339).",
    }
)


# What `dlq-reason` says (orderflow_kit.dead_letters.Reason).
DEAD_LETTER_REASONS: Final = ("permanent", "exhausted")


@dataclass(frozen=True)
class Operation:
    service: str
    action: Literal["send", "receive"]
    channel: str
    description: str

    @property
    def key(self) -> str:
        return f"{self.service}{self.action.title()}{self.channel[0].upper()}{self.channel[1:]}"


_LIVE_FEED: Final = (
    "The live event feeds (`GET /v1/events`, `GET /v1/orders/{order_id}/events`) read it with an ephemeral "
    "consumer per feed, in stream order."
)
OPERATIONS: Final = (
    Operation(
        "orders",
        "send",
        "orderCreated",
        "The outbox relay publishes each committed order's event, at least once and in creation order; a "
        "re-publish has the same Nats-Msg-Id, which the broker drops within its duplicate window.",
    ),
    Operation(
        "inventory",
        "receive",
        "orderCreated",
        "Its durable pull consumer (`inventory` by default) confirms the order's reservation; permanent "
        "failures are dead-lettered at once, others retried with backoff up to max_deliver.",
    ),
    Operation(
        "inventory",
        "send",
        "stockConfirmed",
        "After the confirmation committed and before the OrderCreated is acked; its ce-id and Nats-Msg-Id "
        "derive from the order id, so a re-announcement is the same event.",
    ),
    Operation("inventory", "send", DEAD_LETTERS, "What its consumer gives up on, as `dlq.inventory.orders.created`."),
    Operation(
        "loyalty",
        "receive",
        "orderCreated",
        "Its durable pull consumer (`loyalty` by default) awards the order's points once per event (its "
        "dedupe table on ce-id); failures as inventory's.",
    ),
    Operation(
        "loyalty",
        "send",
        "pointsAwarded",
        "After the award committed and before the OrderCreated is acked; its ce-id and Nats-Msg-Id derive "
        "from the order id.",
    ),
    Operation("loyalty", "send", DEAD_LETTERS, "What its consumer gives up on, as `dlq.loyalty.orders.created`."),
    *(Operation("gateway", "receive", event.channel, _LIVE_FEED) for event in EVENTS),
    Operation("gateway", "receive", DEAD_LETTERS, _LIVE_FEED),
    Operation(
        "gateway",
        "send",
        "orderCreated",
        "A replay of a dead letter (`POST /v1/admin/dead-letters/{sequence}/replay`, or `orderflow dlq "
        "replay`) publishes it again on its original subject: a new Nats-Msg-Id, the same ce-id.",
    ),
)


def _cloudevent_headers() -> dict[str, Any]:
    """CloudEvents 1.0 in binary mode: the attributes as NATS headers (orderflow_contracts.cloudevents)."""
    return {
        "type": "object",
        "required": list(REQUIRED_HEADERS),
        "properties": {
            "ce-specversion": {"type": "string", "const": SPEC_VERSION},
            "ce-id": {
                "type": "string",
                "description": "The event's id: the same across re-publishes and replays, so consumers dedupe on it.",
            },
            "ce-type": {
                "type": "string",
                "pattern": EVENT_TYPE_PATTERN,
                "description": "orderflow.<service>.<event>.v<N>: a breaking change is a new version.",
            },
            "ce-source": {"type": "string", "description": "The service that published it: orderflow/<service>."},
            "ce-time": {"type": "string", "format": "date-time", "description": "When it happened."},
            "ce-subject": {"type": "string", "description": "What it is about: the order id."},
            "content-type": {"type": "string", "const": "application/json"},
            NATS_MSG_ID: {
                "type": "string",
                "description": "The broker's dedupe key: the ce-id, or one derived from what the event is about; "
                "a replay's is new.",
            },
            REQUEST_ID: {
                "type": "string",
                "description": "The gateway request (X-Request-Id) that led to it, when there was one.",
            },
            TRACEPARENT: {"type": "string", "description": "The W3C trace context it was created in."},
        },
    }


def _dead_letter_headers() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Every header of the original message (its broker headers renamed "
        "`dlq-original-Nats-*`, names nats-py cannot publish kept in `unpublishable-headers`), plus these.",
        "required": list(DEAD_LETTER_HEADERS),
        "properties": {
            **{name: {"type": "string", "description": text} for name, text in DEAD_LETTER_HEADERS.items()},
            "dlq-reason": {"enum": list(DEAD_LETTER_REASONS), "description": DEAD_LETTER_HEADERS["dlq-reason"]},
        },
    }


def _event_message(event: Event) -> dict[str, Any]:
    source = f"orderflow/{event.producer}"
    this_event = {"properties": {"ce-type": {"const": event.payload.TYPE}, "ce-source": {"const": source}}}
    return {
        "name": event.name,
        "title": f"{event.name} {event.payload.TYPE.rsplit('.', 1)[1]}",
        "summary": event.summary,
        "contentType": "application/json",
        "headers": {"allOf": [{"$ref": _SCHEMAS + "CloudEventHeaders"}, this_event]},
        "payload": {"$ref": _SCHEMAS + event.message},
    }


def _channels() -> dict[str, Any]:
    channels: dict[str, Any] = {
        event.channel: {
            "address": event.subject,
            "title": event.name,
            "description": f"Stream {ORDERS_STREAM}. {event.summary}",
            "messages": {event.message: {"$ref": f"#/components/messages/{event.message}"}},
        }
        for event in EVENTS
    }
    channels[DEAD_LETTERS] = {
        "address": "dlq.{consumer}.{subject}",
        "title": "Dead letters",
        "description": f"Stream {DEAD_LETTER_STREAM}. What a consumer gave up on, kept until replayed or purged: "
        "operators list, show, replay and purge them through the gateway's `/v1/admin/dead-letters` or "
        "`orderflow dlq`.",
        "parameters": {
            "consumer": {"description": "The durable consumer that gave up.", "examples": ["inventory", "loyalty"]},
            "subject": {"description": "The original's subject.", "examples": [ORDER_CREATED_SUBJECT]},
        },
        "messages": {DEAD_LETTER: {"$ref": f"#/components/messages/{DEAD_LETTER}"}},
    }
    return channels


def _operations() -> dict[str, Any]:
    return {
        operation.key: {
            "action": operation.action,
            "channel": {"$ref": f"#/channels/{operation.channel}"},
            "summary": f"{'Sent' if operation.action == 'send' else 'Received'} by {operation.service}",
            "description": operation.description,
            "tags": [{"name": operation.service}],
        }
        for operation in OPERATIONS
    }


def asyncapi_document() -> dict[str, Any]:
    _, schemas = models_json_schema(
        [(event.payload, "validation") for event in EVENTS], ref_template=_SCHEMAS + "{model}"
    )
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "orderflow events",
            "version": "1",
            "description": "The events between orderflow's services, over NATS JetStream: CloudEvents 1.0 in "
            "binary mode (attributes as `ce-*` headers, the JSON payload as the body). docs/events.md "
            "explains the attributes, the versioning rule and how a new version rolls out.",
        },
        "servers": {
            "nats": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "Wherever ORDERFLOW_NATS_URL points, with JetStream on.",
            }
        },
        "channels": _channels(),
        "operations": _operations(),
        "components": {
            "messages": {
                **{event.message: _event_message(event) for event in EVENTS},
                DEAD_LETTER: {
                    "name": DEAD_LETTER,
                    "title": "Dead letter",
                    "summary": "A message a consumer gave up on: the original body and headers, and why.",
                    "headers": {"$ref": _SCHEMAS + "DeadLetterHeaders"},
                    "payload": {"description": "The original message's body, byte for byte (maybe why it failed)."},
                },
            },
            "schemas": {
                "CloudEventHeaders": _cloudevent_headers(),
                "DeadLetterHeaders": _dead_letter_headers(),
                **schemas["$defs"],
            },
        },
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(asyncapi_document()))
