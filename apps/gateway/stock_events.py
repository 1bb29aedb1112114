"""Live stock over Server-Sent Events: `GET /v1/products/events`, public like the catalog. Each
stream is one call of inventory's WatchStock (server streaming; docs/patterns/streaming.md): the
gateway passes each response on as one `stock` event.

Everything that can refuse the request (an unknown or malformed SKU, inventory away or slow) is
decided on WatchStock's first response, before the stream starts, so a refusal is an ordinary
problem+json answer. Once streaming, the stream ends when inventory's does (a replica stopping, a
lost connection): EventSource clients reconnect by themselves after the `retry:` hint, and their
first event gives the current levels again, so there is nothing to resume and no event id."""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Final

import grpc
import structlog
from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from gateway.problems import Problem, problem_responses
from gateway.routes import PREFIX, UPSTREAM_FAILURES
from gateway.settings import GatewaySettings
from gateway.upstreams import UpstreamsDep
from orderflow_contracts.identifiers import SKU_PATTERN
from orderflow_contracts.inventory.v1 import inventory_pb2
from orderflow_kit.request_context import outgoing_metadata

log = structlog.get_logger()

STOCK_EVENT: Final = "stock"
# What WatchStock's read() gives at the end of the stream (grpc-stubs does not declare it).
_END: Final[Any] = grpc.aio.EOF  # type: ignore[attr-defined]
# The most SKUs one stream may name (inventory's limit).
MAX_SKUS: Final = 1000

router = APIRouter(prefix=PREFIX, tags=["live stock"])


class OpenStockStreams:
    """How many live stock streams this gateway process holds open: each is a gRPC stream to
    inventory, so their number is bounded (ORDERFLOW_STOCK_EVENTS_MAX_OPEN); beyond it, a 429."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.open = 0

    def take(self) -> Callable[[], None]:
        if self.open >= self._limit:
            raise Problem(
                429,
                "RATE_LIMITED",
                f"This gateway already serves {self._limit} live stock streams; retry later.",
                headers={"Retry-After": "5"},
            )
        self.open += 1
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            if not given_back:
                given_back = True
                self.open -= 1

        return give_back


async def _open_streams(request: Request) -> OpenStockStreams:
    streams: OpenStockStreams = request.app.state.open_stock_streams
    return streams


async def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


Skus = Annotated[
    list[Annotated[str, Field(pattern=SKU_PATTERN)]] | None,
    Query(
        alias="sku",
        max_length=MAX_SKUS,
        description=f"A SKU to watch; repeat for several (at most {MAX_SKUS}). None: every product, "
        "including products added to the catalog later.",
        examples=[["E2E-MUG", "E2E-TEE"]],
    ),
]

_EXAMPLE = """\
: orderflow live stock
retry: 3000

event: stock
data: {"levels":[{"sku":"LAMP-DESK","available":12},{"sku":"MUG-001","available":240}]}

event: stock
data: {"levels":[{"sku":"MUG-001","available":238}]}

: ping - 2026-11-20 10:15:15.000000+00:00

"""

_DESCRIPTION = (
    "A stream of Server-Sent Events (`text/event-stream`) that stays open until the client closes it. It starts "
    "with a comment and a `retry:` hint (milliseconds). Then `stock` events, `data` one line of JSON with "
    "`levels`, a list of `{sku, available}` in SKU order: the first event holds the current level of every "
    "watched SKU, each later one the levels that changed, within moments of any reservation, release, expiry or "
    "restock, through whichever replica. A client that reads slowly gets each SKU's latest level, not every step. "
    "A comment line (`: ping - ...`) comes every ORDERFLOW_LIVE_EVENTS_HEARTBEAT_SECONDS. The stream may end "
    "(an inventory replica stopping): reconnect; the first event gives the current levels again. "
    "See docs/patterns/streaming.md."
)


@router.get(
    "/products/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": _DESCRIPTION,
            "content": {"text/event-stream": {"schema": {"type": "string"}, "example": _EXAMPLE}},
        },
        **problem_responses(400, 404, 422, 429, *UPSTREAM_FAILURES),
    },
)
async def stock_events(
    upstreams: UpstreamsDep,
    settings: Annotated[GatewaySettings, Depends(_settings)],
    streams: Annotated[OpenStockStreams, Depends(_open_streams)],
    sku: Skus = None,
) -> EventSourceResponse:
    """Live availability of the catalog's products (all, or the SKUs named): the current levels,
    then every change. Public, like GET /v1/products. 404 UNKNOWN_SKU for a SKU not in the catalog."""
    give_back = streams.take()
    # No deadline on the call: it lasts as long as the client listens. Its first answer has one.
    call = upstreams.inventory.WatchStock(inventory_pb2.WatchStockRequest(skus=sku or []), metadata=outgoing_metadata())
    try:
        try:
            async with asyncio.timeout(upstreams.deadline_seconds):
                first = await call.read()
        except TimeoutError:
            raise Problem(
                504, "DEPENDENCY_TIMEOUT", "A service behind the gateway did not answer in time; retry later."
            ) from None
        if first is _END:  # the replica was stopping
            raise Problem(503, "DEPENDENCY_UNAVAILABLE", "A service behind the gateway is unavailable; retry later.")
    except BaseException:
        call.cancel()
        give_back()
        raise

    async def events() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(comment="orderflow live stock", retry=settings.live_events_retry_ms)
        response = first
        while response is not _END:
            yield ServerSentEvent(_levels_json(response), event=STOCK_EVENT)
            try:
                response = await call.read()
            except grpc.aio.AioRpcError as error:
                log.info("live stock stream ended by inventory", grpc_status=error.code().name)
                return

    heartbeat = settings.live_events_heartbeat_seconds
    return _WatchResponse(call, give_back, events(), ping=heartbeat, send_timeout=2 * heartbeat)


def _levels_json(response: inventory_pb2.WatchStockResponse) -> str:
    levels = [{"sku": level.sku, "available": level.available} for level in response.levels]
    return json.dumps({"levels": levels}, separators=(",", ":"))


class _WatchResponse(EventSourceResponse):
    """Cancels its WatchStock call, and gives its slot back, however the stream ends."""

    def __init__(self, call: Any, give_back: Callable[[], None], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.call = call
        self.give_back = give_back

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.give_back()
            self.call.cancel()
