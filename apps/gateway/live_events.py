"""Live order events over Server-Sent Events: one order's for its customer, every order's for
operators. The feed itself is gateway.event_feed; this is the HTTP side: who may read what,
Last-Event-ID, the `retry:` hint, heartbeats, and closing the feed when the client goes.

Everything that can refuse a request (the token, the order, Last-Event-ID, the broker) is decided
before the stream starts, so a refusal is an ordinary problem+json answer, never a broken stream.
The token is asked again while the stream lasts: the stream ends when the gateway would refuse it
(expired, or its key withdrawn), and the client reconnects with a fresh one and Last-Event-ID."""

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, timedelta
from functools import partial
from typing import Annotated, Any, Final, TypeVar

import structlog
from fastapi import Depends, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from gateway import auth, event_streams
from gateway.auth import (
    ACCEPTED_TOKEN_SECONDS,
    AcceptedToken,
    AdminPrincipal,
    BearerToken,
    CustomerPrincipal,
    Principal,
    authenticated_router,
)
from gateway.broker import broker_errors
from gateway.event_feed import EVENT_ID_PATTERN, EventFeed, FeedScope, InvalidPosition, Position
from gateway.problem_openapi import problem_responses
from gateway.problems import Problem
from gateway.routes import PREFIX, UPSTREAM_FAILURES, OrderId
from gateway.settings import GatewaySettings
from gateway.upstreams import UpstreamsDep
from orderflow_contracts.orders.v1 import orders_pb2
from orderflow_kit.request_context import request_id_var

# The last thing a stream sends when its token is no longer accepted.
TOKEN_EXPIRED_COMMENT: Final = "token expired: reconnect with a fresh token and Last-Event-ID"
# What the stream's opening comment calls it.
_NAME: Final = "live events"

T = TypeVar("T")
log = structlog.get_logger()

router = authenticated_router(PREFIX, "live events")


async def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


SettingsDep = Annotated[GatewaySettings, Depends(_settings)]


class OpenFeeds:
    """How many live feeds each customer has open in this gateway process. A feed holds two
    JetStream consumers and their buffers for as long as it lasts, so one token may not hoard them
    (the rate limit only slows down how fast they open)."""

    def __init__(self, per_customer: int) -> None:
        self._per_customer = per_customer
        self._open: Counter[str] = Counter()

    def take(self, customer_id: str) -> Callable[[], None]:
        """A slot for one more feed of `customer_id`, or a 429; call what it returns to give it back."""
        if self._open[customer_id] >= self._per_customer:
            raise Problem(
                429,
                "RATE_LIMITED",
                f"This customer already has {self._per_customer} live event streams open here; close one first.",
                headers={"Retry-After": "1"},
            )
        self._open[customer_id] += 1
        return partial(self._give_back, customer_id)

    def _give_back(self, customer_id: str) -> None:
        self._open[customer_id] -= 1
        if self._open[customer_id] <= 0:
            del self._open[customer_id]


async def _open_feeds(request: Request) -> OpenFeeds:
    feeds: OpenFeeds = request.app.state.open_feeds
    return feeds


OpenFeedsDep = Annotated[OpenFeeds, Depends(_open_feeds)]


LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        description=(
            "Resume after this event: the `id` of the last event received, `<ORDERS sequence>.<DEAD_LETTERS "
            "sequence>`, each decimal without leading zeros, at most 19 digits. EventSource clients send it by "
            "themselves when they reconnect. Any other value is a 400 INVALID_LAST_EVENT_ID."
        ),
        examples=["1042.7"],
        # Checked by Position.parse, so that a wrong one is INVALID_LAST_EVENT_ID, not a generic 422.
        json_schema_extra={"pattern": EVENT_ID_PATTERN},
    ),
]


@dataclass
class FeedRequest:
    """What opening any live feed takes besides its scope and its principal; FastAPI fills it in."""

    token: AcceptedToken
    upstreams: UpstreamsDep
    settings: SettingsDep
    feeds: OpenFeedsDep
    last_event_id: LastEventId = None


FeedRequestDep = Annotated[FeedRequest, Depends()]

_ORDER_EXAMPLE = """\
id: 1042.7
event: order.created
data: {"event_id":"5f0c6f1e-8a51-4a43-9a57-0d4f5c3b2a10","order_id":"0b7e8f4c-3a64-4c55-9d0e-4b8a2f7c1d23",\
"customer_id":"customer-42","items":[{"sku":"SKU-1","quantity":2,"unit_price_cents":1250}],"total_cents":2500,\
"currency":"EUR","created_at":"2026-11-20T10:15:00.123456Z","published_at":"2026-11-20T10:15:00.131002+00:00"}

id: 1043.7
event: stock.confirmed
data: {"event_id":"9b2f4c1a-7d3e-5f60-8a1b-2c3d4e5f6a7b","order_id":"0b7e8f4c-3a64-4c55-9d0e-4b8a2f7c1d23",\
"customer_id":"customer-42","items":[{"sku":"SKU-1","quantity":2}],"late":false,\
"confirmed_at":"2026-11-20T10:15:00.298765Z"}

id: 1044.7
event: points.awarded
data: {"event_id":"1d7a3e1c-5b6e-5a0e-9c0f-6a2b1e4d7c55","order_id":"0b7e8f4c-3a64-4c55-9d0e-4b8a2f7c1d23",\
"customer_id":"customer-42","points":25,"balance_after":125,"awarded_at":"2026-11-20T10:15:00.456789Z"}

: ping - 2026-11-20 10:15:15.000000+00:00

"""

_ADMIN_EXAMPLE = """\
id: 1044.8
event: order.dead_lettered
data: {"event_id":"7c1e9b0a-2f4d-4e8b-8a6c-3d5f7e9a1b2c","event_type":"orderflow.orders.order_created.v1",\
"order_id":"0b7e8f4c-3a64-4c55-9d0e-4b8a2f7c1d23","customer_id":null,"consumer":"loyalty",\
"original_subject":"orders.created","reason":"permanent","dead_letter_sequence":8,\
"dead_lettered_at":"2026-11-20T10:16:02.000000+00:00","error_class":"ValidationError",\
"error":"1 validation error for OrderCreatedV1 ..."}

"""

_STREAM_DESCRIPTION = (
    "A stream of Server-Sent Events (`text/event-stream`) that stays open until the client closes it. It starts "
    "with a comment and a `retry:` hint (milliseconds), then one event per lifecycle step: `event` is "
    "`order.created`, `stock.confirmed`, `points.awarded` or `order.dead_lettered`, `data` one line of JSON, "
    "`id` the position to resume from (send it back as `Last-Event-ID`). A comment line (`: ping - ...`) comes every "
    "ORDERFLOW_LIVE_EVENTS_HEARTBEAT_SECONDS, so that an idle connection stays open. Delivery is at least once: "
    "a client may see an event again after it reconnects, and dedupes on `data.event_id` (dead letters: "
    "`dead_letter_sequence`). "
    "The stream ends when its bearer token expires (or is no longer accepted), after a comment `: token expired`; "
    "reconnect with a fresh token and `Last-Event-ID` to lose nothing. "
    "See docs/patterns/live-events.md."
)


def _stream_response(events: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": _STREAM_DESCRIPTION,
            "content": event_streams.openapi_content(_NAME, events),
        }
    }


@router.get(
    "/orders/{order_id}/events",
    response_class=EventSourceResponse,
    responses={**_stream_response(_ORDER_EXAMPLE), **problem_responses(400, 404, 422, *UPSTREAM_FAILURES)},
)
async def order_events(
    order_id: OrderId, principal: CustomerPrincipal, feed_request: FeedRequestDep
) -> EventSourceResponse:
    """One order's lifecycle as it happens, from its creation: created, stock confirmed, points
    awarded, and any dead letter of it. Its own customer's order, or any with scope admin (who
    also sees dead letters' errors); another customer's is a 404, as for GET /v1/orders/{order_id}."""
    structlog.contextvars.bind_contextvars(order_id=order_id)
    position = _position(feed_request.last_event_id)
    upstreams = feed_request.upstreams
    order = await upstreams.call(upstreams.orders.GetOrder, orders_pb2.GetOrderRequest(order_id=order_id))
    auth.check_may_see_order(principal, order_id, order.customer_id)
    lookback = timedelta(seconds=feed_request.settings.live_events_lookback_seconds)
    since = order.created_at.ToDatetime(tzinfo=UTC) - lookback
    scope = FeedScope(order_id=order_id, since=since, with_errors=principal.is_admin)
    return await _stream(scope, position, feed_request, principal)


@router.get(
    "/events",
    response_class=EventSourceResponse,
    responses={**_stream_response(_ADMIN_EXAMPLE), **problem_responses(400, 422, 503, 504)},
)
async def all_events(principal: AdminPrincipal, feed_request: FeedRequestDep) -> EventSourceResponse:
    """Every order's lifecycle as it happens (scope admin), from now on, or from Last-Event-ID;
    dead letters with their errors."""
    scope = FeedScope(order_id=None, since=None, with_errors=True)
    return await _stream(scope, _position(feed_request.last_event_id), feed_request, principal)


def _position(last_event_id: str | None) -> Position | None:
    if last_event_id is None:
        return None
    try:
        return Position.parse(last_event_id)
    except InvalidPosition as error:
        raise Problem(
            400, "INVALID_LAST_EVENT_ID", f"Last-Event-ID {last_event_id!r} is not an event id: {error}."
        ) from None


async def _stream(
    scope: FeedScope, position: Position | None, feed_request: FeedRequest, principal: Principal
) -> EventSourceResponse:
    settings = feed_request.settings
    give_back_slot = feed_request.feeds.take(principal.customer_id)
    try:
        js = await feed_request.upstreams.broker.jetstream()
        with broker_errors():
            feed = await EventFeed.open(js, scope, position, request_id=request_id_var.get() or "none")
    except BaseException:
        give_back_slot()
        raise

    async def events() -> AsyncIterator[ServerSentEvent]:
        yield event_streams.opening(_NAME, settings)
        accepted = WhileAccepted(feed_request.token, principal.expires_at)
        async for event, at in accepted.events(feed.events()):
            yield ServerSentEvent(json.dumps(event.data, separators=(",", ":")), event=event.name, id=str(at))
        if accepted.refused:
            log.info("live event stream ended: its token is no longer accepted")
            yield ServerSentEvent(comment=TOKEN_EXPIRED_COMMENT)

    return event_streams.stream_response(events(), settings, give_back=give_back_slot, close=feed.close)


class WhileAccepted:
    """Passes events on for as long as a token is accepted: it is asked again when it expires, and
    at least every ACCEPTED_TOKEN_SECONDS (a withdrawn key). `refused` says why the events ended."""

    def __init__(self, token: BearerToken, expires_at: float) -> None:
        self._token = token
        self._expires_at = expires_at
        self.refused = False

    async def events(self, source: AsyncIterator[T]) -> AsyncIterator[T]:
        following: asyncio.Future[T] | None = None
        try:
            while True:
                if following is None:
                    following = asyncio.ensure_future(anext(source))
                check_in = max(0.0, min(self._expires_at - time.time(), ACCEPTED_TOKEN_SECONDS))
                done, _ = await asyncio.wait({following}, timeout=check_in)
                if following in done:
                    try:
                        item = following.result()
                    except StopAsyncIteration:
                        return
                    following = None
                    yield item
                elif not await self._token.still_accepted():
                    self.refused = True
                    return
        finally:
            if following is not None:
                following.cancel()
