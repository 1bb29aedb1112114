"""docs/asyncapi.json is orderflow's events exactly: regenerate it with `make docs`. And what it says
is what the code does: every subject and event model is in it, and the messages the services build
(events, dead letters) have the headers and payloads it documents."""

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from nats.aio.msg import Msg
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from inventory import announcing_stock
from inventory.reservations import Confirmation
from loyalty import announcing_points
from loyalty.awarding_points import Award, Outcome
from orderflow_contracts import streams
from orderflow_contracts.asyncapi_document import (
    DEAD_LETTER,
    DEAD_LETTER_HEADERS,
    DEAD_LETTER_REASONS,
    EVENTS,
    asyncapi_document,
    render,
)
from orderflow_contracts.cloudevents import CloudEvent
from orderflow_contracts.events import EventPayload, OrderCreated, OrderCreatedV1, OrderLineV1
from orderflow_kit.dead_letters import HEADER_PREFIX, ORIGINAL_BROKER_HEADER_PREFIX, Failed, Reason, dead_letter_headers
from orders import outbox

DOCS = Path(__file__).parents[3] / "docs"
COMMITTED = DOCS / "asyncapi.json"
DOCUMENT = asyncapi_document()
# The document as a JSON Schema resource, so that a message's schemas resolve their $refs in it.
_REGISTRY = Registry().with_resource("urn:asyncapi", Resource.from_contents(DOCUMENT, default_specification=DRAFT7))

ORDER = OrderCreatedV1(
    order_id=uuid.uuid4(),
    customer_id="cust-1",
    items=[OrderLineV1(sku="SKU-1", quantity=2, unit_price_cents=1099)],
    total_cents=2198,
    currency="EUR",
    created_at=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
)
CARRIED = {"ce-requestid": "req-1", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def test_the_committed_asyncapi_document_is_the_codes() -> None:
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert committed == DOCUMENT, "docs/asyncapi.json differs from the code: run `make docs`"


def test_the_committed_document_is_rendered_as_make_docs_renders_it() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(DOCUMENT)


def test_every_subject_of_the_orders_stream_is_a_channel() -> None:
    subjects = {value for name, value in vars(streams).items() if name.endswith("_SUBJECT")}

    assert subjects == {channel["address"] for channel in DOCUMENT["channels"].values()} - {"dlq.{consumer}.{subject}"}


def test_every_event_model_is_a_documented_message() -> None:
    models = set(EventPayload.__subclasses__())

    assert models == {event.payload for event in EVENTS}
    assert {model.__name__ for model in models} <= set(DOCUMENT["components"]["messages"])


def test_docs_events_md_describes_every_cloudevents_header_of_the_document() -> None:
    page = (DOCS / "events.md").read_text(encoding="utf-8")
    headers = DOCUMENT["components"]["schemas"]["CloudEventHeaders"]["properties"]

    assert [name for name in headers if f"| `{name}` |" not in page] == []


def valid(message: str, part: str, value: object) -> None:
    """Raises unless `value` is what the document says a message's `part` (headers, payload) is."""
    schema = {"$ref": f"urn:asyncapi#/components/messages/{message}/{part}"}
    jsonschema.Draft7Validator(schema, registry=_REGISTRY).validate(value)


def announced_stock() -> CloudEvent:
    created = OrderCreated(str(uuid.uuid4()), ORDER)
    return announcing_stock.stock_confirmed_event(created, Confirmation.CONFIRMED, CARRIED)


def awarded_points() -> CloudEvent:
    award = Award(
        outcome=Outcome.AWARDED,
        order_id=ORDER.order_id,
        customer_id="cust-1",
        points=21,
        balance_after=21,
        awarded_at=datetime.now(UTC),
    )
    return announcing_points.points_awarded_event(award, CARRIED)


def created_order() -> CloudEvent:
    return outbox.new_event(
        OrderCreatedV1.TYPE, str(ORDER.order_id), ORDER.model_dump_json().encode(), ORDER.created_at
    )


@pytest.mark.parametrize(
    ("message", "build"),
    [("OrderCreatedV1", created_order), ("StockConfirmedV1", announced_stock), ("PointsAwardedV1", awarded_points)],
)
def test_each_event_as_its_producer_builds_it_is_the_documented_message(message: str, build: Any) -> None:
    event = build()

    valid(message, "headers", event.to_headers())
    valid(message, "payload", json.loads(event.data))


def test_a_message_of_another_producer_or_type_is_not_the_documented_one() -> None:
    headers = awarded_points().to_headers()

    with pytest.raises(jsonschema.ValidationError):
        valid("OrderCreatedV1", "headers", headers)


def test_a_dead_letter_has_the_documented_headers() -> None:
    original = created_order()
    # Delivered the third time, as stream sequence 42: what the ack subject says.
    reply = "$JS.ACK.ORDERS.loyalty.3.42.17.1763700000000000000.0"
    headers = original.to_headers()
    message = Msg(_client=None, subject="orders.created", reply=reply, data=original.data, headers=headers)  # type: ignore[arg-type]
    failed = Failed(Reason.EXHAUSTED, "boom", "OperationalError", datetime.now(UTC))

    letter = dead_letter_headers(message, consumer="loyalty", failed=failed)

    valid(DEAD_LETTER, "headers", letter)
    added = {name for name in letter if name.startswith(HEADER_PREFIX)}
    assert added - {name for name in added if name.startswith(ORIGINAL_BROKER_HEADER_PREFIX)} == set(
        DEAD_LETTER_HEADERS
    )
    assert {reason.value for reason in Reason} == set(DEAD_LETTER_REASONS)
