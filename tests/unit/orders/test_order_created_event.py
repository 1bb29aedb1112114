"""The OrderCreated event as it is stored in the outbox: a CloudEvent whose headers carry the
broker's dedupe key and the request's context, and whose body is a valid OrderCreatedV1."""

import uuid
from datetime import UTC, datetime

from orderflow_contracts.cloudevents import CloudEvent
from orderflow_contracts.events import OrderCreatedV1
from orderflow_kit.request_context import request_id_var, traceparent_var
from orders.outbox import EVENT_SOURCE, new_event

TIME = datetime(2026, 11, 21, 4, 31, 9, 123456, tzinfo=UTC)


def test_each_event_has_a_new_id_which_is_also_its_nats_msg_id() -> None:
    order_id = str(uuid.uuid4())
    first, second = (new_event(OrderCreatedV1.TYPE, order_id, b"{}", TIME) for _ in range(2))

    headers = first.to_headers()

    assert first.id != second.id
    assert uuid.UUID(first.id).version == 4
    assert headers["Nats-Msg-Id"] == headers["ce-id"] == first.id
    assert (headers["ce-type"], headers["ce-source"], headers["ce-subject"]) == (
        OrderCreatedV1.TYPE,
        EVENT_SOURCE,
        order_id,
    )
    assert headers["ce-time"] == "2026-11-21T04:31:09.123456+00:00"
    assert "traceparent" not in headers
    assert "ce-requestid" not in headers


def test_the_request_id_and_trace_context_travel_in_the_headers() -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    request_token, trace_token = request_id_var.set("req-42"), traceparent_var.set(traceparent)
    try:
        event = new_event(OrderCreatedV1.TYPE, str(uuid.uuid4()), b"{}", TIME)
    finally:
        request_id_var.reset(request_token)
        traceparent_var.reset(trace_token)

    read_back = CloudEvent.from_message(event.to_headers(), event.data)

    assert read_back.extensions == {"traceparent": traceparent, "ce-requestid": "req-42"}
    assert read_back == event
