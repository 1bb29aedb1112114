"""Traces through the real pipeline (docs/observability.md, "Traces"): the four services as
processes export OTLP to a receiver this test runs, and one order placed through the gateway is
ONE trace, from POST /v1/orders to its points awarded and its stock confirmed, with the parents
and links the docs describe; a replayed dead letter links to the trace it began in."""

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from orderflow_bench.otlp_receiver import OtlpReceiver, ReceivedSpan
from orderflow_contracts.streams import ORDER_CREATED_SUBJECT, POINTS_AWARDED_SUBJECT, STOCK_CONFIRMED_SUBJECT
from orderflow_devstack.infra import Infrastructure
from tests.e2e.conftest import CATALOG
from tests.e2e.support import loyalty, new_customer, publish
from tests.support.events import order_created
from tests.support.pipeline import Pipeline, running_pipeline
from tests.support.polling import eventually
from tests.support.tokens import as_admin, as_customer

pytestmark = pytest.mark.e2e

# A trace begun before the pipeline: the poison message's creation context.
ORIGINAL_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ORIGINAL_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def traced(
    infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver
) -> Iterator[Pipeline]:
    """A pipeline of its own whose services export every span to `receiver`."""
    work = tmp_path_factory.mktemp("traces")
    with running_pipeline(infra, work, CATALOG, prefix="traces", env=receiver.environment()) as running:
        yield running


@pytest.fixture
async def api(traced: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=traced.gateway_url, timeout=30, trust_env=False) as client:
        yield client


class Trace:
    """The spans of one trace id, with a way to look them up and to show them when a check fails."""

    def __init__(self, spans: list[ReceivedSpan], trace_id: str) -> None:
        self.all = spans
        self.spans = [span for span in spans if span.trace_id == trace_id]
        self.trace_id = trace_id

    def find(self, service: str, name: str, kind: str | None = None) -> list[ReceivedSpan]:
        return [
            span
            for span in self.spans
            if span.service == service and span.name == name and (kind is None or span.kind == kind)
        ]

    def find_service(self, service: str) -> list[ReceivedSpan]:
        return [span for span in self.spans if span.service == service]

    def one(self, service: str, name: str, kind: str | None = None) -> ReceivedSpan:
        found = self.find(service, name, kind)
        assert len(found) == 1, f"{len(found)} spans {service}: {name} in\n{self}"
        return found[0]

    def by_id(self, span_id: str | None) -> ReceivedSpan | None:
        return next((span for span in self.all if span.span_id == span_id), None)

    def ancestors(self, span: ReceivedSpan) -> list[ReceivedSpan]:
        chain = []
        parent = self.by_id(span.parent_span_id)
        while parent is not None:
            chain.append(parent)
            parent = self.by_id(parent.parent_span_id)
        return chain

    def __str__(self) -> str:
        return "\n".join(str(span) for span in self.spans)


def order_trace(receiver: OtlpReceiver, order_id: str) -> Trace | None:
    """The order's trace once the last hops (points and stock announced, both consumers done) arrived."""
    spans = receiver.spans()
    created = [span for span in spans if span.attributes.get("orderflow.order_id") == order_id]
    if not created:
        return None
    found = Trace(spans, created[0].trace_id)
    done = (
        found.find("loyalty", f"send {POINTS_AWARDED_SUBJECT}")
        and found.find("inventory", f"send {STOCK_CONFIRMED_SUBJECT}")
        and found.find("inventory", f"{ORDER_CREATED_SUBJECT} process")
        and found.find("loyalty", f"{ORDER_CREATED_SUBJECT} process")
        and found.find("orders", f"send {ORDER_CREATED_SUBJECT}")
        and found.find("gateway", "POST /v1/orders")
    )
    return found if done else None


async def test_one_order_is_one_trace_through_every_hop(
    api: httpx.AsyncClient, traced: Pipeline, receiver: OtlpReceiver
) -> None:
    customer = new_customer()
    placed = await api.post(
        "/v1/orders",
        json={"customer_id": customer, "items": [{"sku": "E2E-MUG", "quantity": 2}]},
        headers={**as_customer(customer), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["order_id"]
    await eventually(lambda: loyalty(api, customer), lambda b: b["orders_awarded"] == 1, what="points awarded")
    found = await eventually(lambda: order_trace(receiver, order_id), what=f"the trace of order {order_id}")
    assert found is not None

    # One trace, from every service.
    assert {span.service for span in found.spans} == {"gateway", "orders", "inventory", "loyalty"}
    request = found.one("gateway", "POST /v1/orders", "SERVER")
    assert request.parent_span_id is None  # the client sent no traceparent: the trace begins here

    # gRPC on both sides: gateway -> orders -> inventory, each server span a child of its client span.
    create_order = found.one("orders", "/orderflow.orders.v1.OrderService/CreateOrder", "SERVER")
    assert found.by_id(create_order.parent_span_id) in found.find("gateway", create_order.name, "CLIENT")
    reserve = found.one("inventory", "/orderflow.inventory.v1.InventoryService/ReserveStock", "SERVER")
    assert found.by_id(reserve.parent_span_id) in found.find("orders", reserve.name, "CLIENT")
    # Redis (the rate limits, the idempotency key) and PostgreSQL statements, inside the request.
    assert any(span.attributes.get("db.system") == "redis" for span in found.find_service("gateway"))
    assert any(span.kind == "CLIENT" and "db.system" in span.attributes for span in found.find_service("inventory"))

    # The outbox write is the event's create span; its statement runs inside it.
    create = found.one("orders", f"create {ORDER_CREATED_SUBJECT}", "PRODUCER")
    assert create_order in found.ancestors(create)
    assert request in found.ancestors(create)
    assert any(span.parent_span_id == create.span_id and "db.system" in span.attributes for span in found.spans)

    # The relay: the event's send span is a child of its creation context, linked to the batch
    # span, which is a trace of its own that links every event it carries.
    send = found.one("orders", f"send {ORDER_CREATED_SUBJECT}", "PRODUCER")
    assert send.parent_span_id == create.span_id
    relay_batch = _linked_batch(found, send)
    assert relay_batch.kind == "CLIENT"
    assert relay_batch.trace_id != found.trace_id
    assert (found.trace_id, create.span_id) in relay_batch.links

    # Each consumer: the message's process span (FastStream's) is a child of the creation context,
    # linked to its batch span, a trace of its own that links every message it carries.
    for service in ("inventory", "loyalty"):
        process = found.one(service, f"{ORDER_CREATED_SUBJECT} process", "CONSUMER")
        assert process.parent_span_id == create.span_id
        batch = _linked_batch(found, process)
        assert (batch.service, batch.name, batch.kind) == (service, f"process {ORDER_CREATED_SUBJECT}", "CONSUMER")
        assert batch.trace_id != found.trace_id
        assert (found.trace_id, create.span_id) in batch.links
        assert not process.failed

    # The points_awarded announcement is a child of loyalty's processing of the order.
    announce = found.one("loyalty", f"send {POINTS_AWARDED_SUBJECT}", "PRODUCER")
    assert announce.parent_span_id == found.one("loyalty", f"{ORDER_CREATED_SUBJECT} process").span_id
    # And the stock_confirmed one, of inventory's.
    confirmed = found.one("inventory", f"send {STOCK_CONFIRMED_SUBJECT}", "PRODUCER")
    assert confirmed.parent_span_id == found.one("inventory", f"{ORDER_CREATED_SUBJECT} process").span_id

    # Log lines carry the trace: the gateway's access line and the relay's line of this order.
    assert _logged(traced, "gateway", "request", found.trace_id)
    assert _logged(traced, "orders", "event published", found.trace_id)
    assert _logged(traced, "loyalty", "event consumed", found.trace_id)


async def test_a_replayed_dead_letter_links_to_the_trace_it_began_in(
    api: httpx.AsyncClient, traced: Pipeline, receiver: OtlpReceiver
) -> None:
    customer = new_customer()
    event = order_created(customer, total_cents=1500)
    headers = {**event.to_headers(), "traceparent": f"00-{ORIGINAL_TRACE}-{ORIGINAL_SPAN}-01"}
    await publish(traced.nats_url, headers, b"not json")  # poison: dead-lettered at once

    letter = await eventually(lambda: _dead_letter(api, traced.consumer, event.id), what="loyalty's dead letter")
    assert letter is not None
    assert letter["traceparent"] == headers["traceparent"]  # the dead letter keeps the original context
    replayed = await api.post(
        f"/v1/admin/dead-letters/{letter['sequence']}/replay",
        json={"payload": json.loads(event.data)},
        headers=as_admin(),
    )
    assert replayed.status_code == 200, replayed.text
    await eventually(lambda: loyalty(api, customer), lambda b: b["orders_awarded"] == 1, what="the replay's points")

    def replay_span() -> ReceivedSpan | None:
        return next(
            (
                span
                for span in receiver.spans()
                if span.attributes.get("messaging.operation.name") == "replay"
                and span.attributes.get("messaging.message.id") == event.id
            ),
            None,
        )

    replay = await eventually(replay_span, what="the replay's span")
    assert replay is not None
    # Each service exports its spans in batches of its own, at its own moments: loyalty's may come later.
    original = await eventually(
        lambda: Trace(receiver.spans(), ORIGINAL_TRACE),
        lambda found: len(found.find_service("loyalty")) >= 2,
        what="loyalty's spans of the poison message",
    )
    # The poison message's processing and its dead letter are in the original trace ...
    process = original.one("loyalty", f"{ORDER_CREATED_SUBJECT} process", "CONSUMER")
    assert process.parent_span_id == ORIGINAL_SPAN
    dead_letter = original.one("loyalty", f"send dlq.{traced.consumer}.{ORDER_CREATED_SUBJECT}", "PRODUCER")
    assert dead_letter.parent_span_id == process.span_id
    # ... the replay is the operator's request's, linked to the original trace ...
    assert replay.service == "gateway"
    assert replay.kind == "PRODUCER"
    assert replay.links == ((ORIGINAL_TRACE, ORIGINAL_SPAN),)
    # The request's span ends (and is exported) after its child, the replay's.
    admin_request = await eventually(
        lambda: Trace(receiver.spans(), replay.trace_id).by_id(replay.parent_span_id),
        lambda found: found is not None,
        what="the admin request's span",
    )
    assert admin_request is not None
    assert (admin_request.service, admin_request.kind) == ("gateway", "SERVER")
    assert admin_request.name.startswith("POST /v1/admin/dead-letters")
    # ... and the replayed message is processed in the replay's trace, as its child.
    reprocessed = await eventually(
        lambda: Trace(receiver.spans(), replay.trace_id).find("loyalty", f"{ORDER_CREATED_SUBJECT} process"),
        what="the replayed message's process span",
    )
    assert reprocessed[0].parent_span_id == replay.span_id


def _linked_batch(found: Trace, span: ReceivedSpan) -> ReceivedSpan:
    """The batch span `span` links to."""
    linked = [found.by_id(span_id) for _, span_id in span.links]
    batches = [one for one in linked if one is not None]
    assert len(batches) == 1, f"{span} links to {span.links}"
    return batches[0]


def _logged(pipeline: Pipeline, service: str, event: str, trace_id: str) -> bool:
    for line in (pipeline.log_dir / f"{service}.log").read_text().splitlines():
        _, _, logged = line.partition("| ")
        if logged.startswith("{"):
            entry = json.loads(logged)
            if entry.get("event") == event and entry.get("trace_id") == trace_id and entry.get("span_id"):
                return True
    return False


async def _dead_letter(api: httpx.AsyncClient, consumer: str, event_id: str) -> dict[str, Any] | None:
    response = await api.get("/v1/admin/dead-letters", params={"consumer": consumer}, headers=as_admin())
    assert response.status_code == 200, response.text
    return next((letter for letter in response.json()["dead_letters"] if letter["ce_id"] == event_id), None)
