"""Live order events over Server-Sent Events, through the real gateway in front of the real
pipeline and NATS: an order's lifecycle in order, resumable with Last-Event-ID, its dead letters,
heartbeats, who may read what, and the feed's consumers going away with the client."""

import asyncio
import json
import uuid
from contextlib import AsyncExitStack
from datetime import timedelta
from itertools import pairwise
from typing import Any

import httpx
import pytest

from gateway.auth import LEEWAY_SECONDS
from gateway.event_feed import Position
from gateway.live_events import TOKEN_EXPIRED_COMMENT
from orderflow_contracts.streams import DEAD_LETTER_STREAM, ORDERS_STREAM
from tests.e2e.support import new_customer, place, publish
from tests.support.events import order_created
from tests.support.jetstream import consumers_described_by
from tests.support.pipeline import Pipeline
from tests.support.polling import eventually
from tests.support.sse import Message, event_stream
from tests.support.tokens import ADMIN_ID, as_admin, as_customer, bearer, claims, signed

pytestmark = pytest.mark.e2e

# GatewaySettings.live_events_max_per_customer, the default the pipeline's gateway runs with.
MAX_OPEN_STREAMS = 5


async def placed_order(api: httpx.AsyncClient, customer: str, quantity: int = 1) -> dict[str, Any]:
    response = await place(api, customer, ("E2E-MUG", quantity))
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


def events_of(order_id: str) -> str:
    return f"/v1/orders/{order_id}/events"


# After order.created, inventory's and loyalty's announcements, in whichever order they came.
JOURNEY = ["order.created", "points.awarded", "stock.confirmed"]


def journey_done() -> Any:
    """A predicate for events_until: true once one order's stock is confirmed and its points awarded."""
    seen: set[str | None] = set()

    def done(message: Message) -> bool:
        seen.add(message.event or "")
        return {"stock.confirmed", "points.awarded"} <= seen

    return done


async def whole_journey(api: httpx.AsyncClient, customer: str, order_id: str) -> list[Message]:
    async with event_stream(api, events_of(order_id), as_customer(customer)) as stream:
        return await stream.events_until(journey_done())


async def publish_malformed_order_created(pipeline: Pipeline, order_id: str, customer: str) -> str:
    """An OrderCreated for `order_id` whose body breaks the schema: every consumer dead-letters it."""
    event = order_created(customer, total_cents=100, order_id=uuid.UUID(order_id))
    await publish(pipeline.nats_url, event.to_headers(), json.dumps({"order_id": order_id, "oops": True}).encode())
    return event.id


async def test_an_order_streams_created_then_points_awarded_in_order_with_ids(api: httpx.AsyncClient) -> None:
    customer = new_customer()
    order = await placed_order(api, customer, quantity=3)

    async with event_stream(api, events_of(order["order_id"]), as_customer(customer)) as stream:
        opening = await stream.next_message()
        events = await stream.events_until(journey_done())
        assert stream.response.headers["cache-control"] == "no-store"

    assert opening.retry == 3000
    assert opening.event is None
    assert events[0].event == "order.created"
    assert sorted(event.event or "" for event in events) == JOURNEY
    by_name = {event.event: event.json() for event in events}
    created, awarded, confirmed = (by_name[name] for name in ("order.created", "points.awarded", "stock.confirmed"))
    assert confirmed["order_id"] == order["order_id"]
    assert confirmed["customer_id"] == customer
    assert confirmed["items"] == [{"sku": "E2E-MUG", "quantity": 3}]
    assert confirmed["late"] is False
    assert {key: created[key] for key in ("order_id", "customer_id", "total_cents", "currency")} == {
        key: order[key] for key in ("order_id", "customer_id", "total_cents", "currency")
    }
    assert created["items"] == order["items"]
    assert awarded["order_id"] == order["order_id"]
    assert awarded["customer_id"] == customer
    assert awarded["points"] == 3 * 1250 // 100
    assert len({created["event_id"], awarded["event_id"], confirmed["event_id"]}) == 3
    positions = [Position.parse(event.id or "").orders for event in events]
    assert positions == sorted(positions)
    assert len(set(positions)) == 3


async def test_reconnecting_with_last_event_id_repeats_nothing_and_sends_only_later_events(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    customer = new_customer()
    order_id = (await placed_order(api, customer))["order_id"]
    created, *announced = await whole_journey(api, customer, order_id)

    resumed_after_created = {**as_customer(customer), "Last-Event-ID": created.id or ""}
    async with event_stream(api, events_of(order_id), resumed_after_created) as stream:
        assert [await stream.next_event(), await stream.next_event()] == announced

    await publish_malformed_order_created(pipeline, order_id, customer)
    last = announced[-1]
    resumed_after_last = {**as_customer(customer), "Last-Event-ID": last.id or ""}
    async with event_stream(api, events_of(order_id), resumed_after_last) as stream:
        later = await stream.next_event()
    assert later.event == "order.dead_lettered"
    assert later.json()["order_id"] == order_id
    assert Position.parse(later.id or "").dead_letters > Position.parse(last.id or "").dead_letters


async def test_a_dead_lettered_event_of_the_order_shows_up_live_with_its_error_for_admins_only(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    customer = new_customer()
    order_id = (await placed_order(api, customer))["order_id"]

    def loyalty_gave_up(message: Message) -> bool:
        return message.event == "order.dead_lettered" and message.json()["consumer"] == pipeline.consumer

    async with (
        event_stream(api, events_of(order_id), as_customer(customer)) as customers,
        event_stream(api, events_of(order_id), as_admin()) as admins,
    ):
        await customers.events_until(journey_done())
        await admins.events_until(journey_done())
        event_id = await publish_malformed_order_created(pipeline, order_id, customer)
        seen_by_customer = (await customers.events_until(loyalty_gave_up))[-1].json()
        seen_by_admin = (await admins.events_until(loyalty_gave_up))[-1].json()

    assert seen_by_customer["event_id"] == event_id
    assert seen_by_customer["order_id"] == order_id
    assert seen_by_customer["customer_id"] is None  # the malformed body does not say
    assert seen_by_customer["reason"] == "permanent"
    assert seen_by_customer["original_subject"] == "orders.created"
    assert seen_by_customer["event_type"] == "orderflow.orders.order_created.v1"
    assert "error" not in seen_by_customer
    assert seen_by_admin["error_class"] == "ValidationError"
    assert seen_by_admin["error"]
    assert {key: value for key, value in seen_by_admin.items() if key not in ("error", "error_class")} == (
        seen_by_customer
    )


async def test_the_admin_feed_streams_the_orders_of_several_customers(api: httpx.AsyncClient) -> None:
    alice, bob = new_customer(), new_customer()
    async with event_stream(api, "/v1/events", as_admin()) as stream:
        await stream.next_message()  # the opening: the feed is reading from here
        orders = {(await placed_order(api, customer))["order_id"]: customer for customer in (alice, bob)}
        seen: dict[str, list[str]] = {order_id: [] for order_id in orders}

        def both_awarded(message: Message) -> bool:
            order_id = message.json().get("order_id")
            if order_id in seen:
                seen[order_id].append(message.event or "")
            return all(events[:1] == ["order.created"] and sorted(events) == JOURNEY for events in seen.values())

        events = await stream.events_until(both_awarded)

    customers = {event.json()["customer_id"] for event in events if event.json().get("order_id") in orders}
    assert customers == {alice, bob}
    positions = [Position.parse(event.id or "") for event in events]
    assert all(a.orders <= b.orders and a.dead_letters <= b.dead_letters for a, b in pairwise(positions))


async def test_a_heartbeat_comment_arrives_while_the_feed_is_idle(api: httpx.AsyncClient) -> None:
    customer = new_customer()
    order_id = (await placed_order(api, customer))["order_id"]
    async with event_stream(api, events_of(order_id), as_customer(customer)) as stream:
        await stream.events_until(journey_done())
        heartbeat = await stream.next_message(within=5)

    assert heartbeat.event is None
    assert heartbeat.data is None
    assert heartbeat.comments
    assert heartbeat.comments[0].startswith("ping")


async def test_the_feeds_consumers_are_deleted_when_the_client_goes(api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    request_id = f"e2e-feed-{uuid.uuid4().hex}"
    async with event_stream(api, "/v1/events", {**as_admin(), "X-Request-Id": request_id}) as stream:
        await stream.next_message()
        during = await consumers_described_by(pipeline.nats_url, request_id)

    after = await eventually(
        lambda: consumers_described_by(pipeline.nats_url, request_id),
        lambda counts: not any(counts.values()),
        within=3,
        what="the feed's consumers deleted",
    )
    assert during == {ORDERS_STREAM: 1, DEAD_LETTER_STREAM: 1}
    assert after == {ORDERS_STREAM: 0, DEAD_LETTER_STREAM: 0}


async def problem(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"] == "application/problem+json", response.headers
    return response.status_code, response.json()["code"]


async def test_another_customers_order_is_a_404_exactly_like_a_missing_one(api: httpx.AsyncClient) -> None:
    owner, other = new_customer(), new_customer()
    order_id = (await placed_order(api, owner))["order_id"]

    someone_elses = await api.get(events_of(order_id), headers=as_customer(other))
    missing = await api.get(events_of(str(uuid.uuid4())), headers=as_customer(other))

    assert await problem(someone_elses) == (404, "ORDER_NOT_FOUND")
    assert await problem(missing) == (404, "ORDER_NOT_FOUND")
    assert someone_elses.json()["detail"] == f"order {order_id} does not exist"


async def test_who_may_open_which_feed(api: httpx.AsyncClient) -> None:
    customer = new_customer()
    order_id = (await placed_order(api, customer))["order_id"]

    assert await problem(await api.get(events_of(order_id))) == (401, "AUTHENTICATION_REQUIRED")
    assert await problem(await api.get("/v1/events")) == (401, "AUTHENTICATION_REQUIRED")
    assert await problem(await api.get("/v1/events", headers=as_customer(customer))) == (403, "INSUFFICIENT_SCOPE")
    async with event_stream(api, events_of(order_id), as_admin()) as stream:
        assert (await stream.next_event()).json()["customer_id"] == customer


@pytest.mark.parametrize(
    "last_event_id", ["abc", "12", "1.2.3", "-1.0", "1.x", "1.99999999999999999999", "01.2", "null"]
)
async def test_an_invalid_last_event_id_is_a_400(api: httpx.AsyncClient, last_event_id: str) -> None:
    customer = new_customer()
    order_id = (await placed_order(api, customer))["order_id"]
    for path, headers in ((events_of(order_id), as_customer(customer)), ("/v1/events", as_admin())):
        response = await api.get(path, headers={**headers, "Last-Event-ID": last_event_id})
        assert await problem(response) == (400, "INVALID_LAST_EVENT_ID"), path


async def test_the_largest_last_event_id_is_accepted(api: httpx.AsyncClient) -> None:
    largest = f"{10**19 - 1}.{10**19 - 1}"
    async with event_stream(api, "/v1/events", {**as_admin(), "Last-Event-ID": largest}) as stream:
        assert (await stream.next_message()).retry == 3000


async def test_the_admin_feed_resumes_from_a_last_event_id_in_both_streams(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    """What happened while the client was away comes first: an order placed and a dead letter."""
    async with event_stream(api, "/v1/events", as_admin()) as stream:
        customer = new_customer()
        first = await placed_order(api, customer)
        before = (await stream.events_until(lambda m: m.json().get("order_id") == first["order_id"]))[-1]

    missed = await placed_order(api, customer)
    await publish_malformed_order_created(pipeline, missed["order_id"], customer)
    seen: set[str | None] = set()

    def both_of_missed(message: Message) -> bool:
        # Two streams: the relay's OrderCreated and the dead letter arrive in the order they were
        # stored, which the relay's linger can make either.
        if message.json().get("order_id") == missed["order_id"]:
            seen.add(message.event)
        return {"order.created", "order.dead_lettered"} <= seen

    async with event_stream(api, "/v1/events", {**as_admin(), "Last-Event-ID": before.id or ""}) as stream:
        caught_up = await stream.events_until(both_of_missed)

    assert first["order_id"] not in {event.json().get("order_id") for event in caught_up if is_created(event)}


def is_created(message: Message) -> bool:
    return message.event == "order.created"


async def test_an_open_feed_goes_on_after_nats_restarts(api: httpx.AsyncClient, pipeline: Pipeline) -> None:
    """The ordered consumers are recreated from the last sequence seen once the broker is back."""
    nats_server = pipeline.infra.nats
    if nats_server is None:
        pytest.skip("NATS comes from ORDERFLOW_NATS_URL: not ours to stop")
    customer = new_customer()
    order_id = (await placed_order(api, customer))["order_id"]
    async with event_stream(api, events_of(order_id), as_customer(customer)) as stream:
        await stream.events_until(journey_done())
        await asyncio.to_thread(nats_server.stop)
        await asyncio.to_thread(nats_server.start)
        event_id = await publish_malformed_order_created(pipeline, order_id, customer)
        dead_lettered = await stream.next_event(within=60)

    assert dead_lettered.event == "order.dead_lettered"
    assert dead_lettered.json()["event_id"] == event_id


async def test_a_customer_holds_at_most_its_share_of_open_streams_and_gets_one_back_when_one_closes(
    api: httpx.AsyncClient,
) -> None:
    customer = new_customer()
    order = await placed_order(api, customer)
    path, headers = events_of(order["order_id"]), as_customer(customer)

    async with AsyncExitStack() as streams:
        for _ in range(MAX_OPEN_STREAMS):
            await streams.enter_async_context(event_stream(api, path, headers))
        refused = await api.get(path, headers=headers)

    async def opens() -> int:
        async with api.stream("GET", path, headers=headers) as response:
            return response.status_code

    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "RATE_LIMITED"
    await eventually(opens, lambda status: status == 200, what="a stream opens again once the others are closed")


def expiring(customer_id: str, scope: str = "orders", seconds: float = 2.0) -> dict[str, str]:
    """A token the gateway accepts for about `seconds` more (it allows LEEWAY_SECONDS of clock skew)."""
    lifetime = timedelta(seconds=seconds - LEEWAY_SECONDS)
    return bearer(signed(claims(customer_id, scope, expires_in=lifetime)))


async def test_an_order_feed_ends_when_its_token_expires_and_a_fresh_one_resumes_losing_nothing(
    api: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    customer = new_customer()
    order_id = (await placed_order(api, customer))["order_id"]
    *_, announced = await whole_journey(api, customer, order_id)
    resume = {"Last-Event-ID": announced.id or ""}

    async with event_stream(api, events_of(order_id), {**expiring(customer), **resume}) as stream:
        last = (await stream.until_it_ends())[-1]
    # While the client is away, the order is dead-lettered.
    await publish_malformed_order_created(pipeline, order_id, customer)
    async with event_stream(api, events_of(order_id), {**as_customer(customer), **resume}) as stream:
        missed = await stream.next_event()

    assert last.comments == [TOKEN_EXPIRED_COMMENT]
    assert last.event is None
    assert missed.event == "order.dead_lettered"
    assert missed.json()["order_id"] == order_id


async def test_the_admin_feed_ends_when_its_token_expires(api: httpx.AsyncClient) -> None:
    async with event_stream(api, "/v1/events", expiring(ADMIN_ID, "orders admin")) as stream:
        messages = await stream.until_it_ends()

    assert messages[-1].comments == [TOKEN_EXPIRED_COMMENT]
    assert all(message.event is None for message in messages)
