"""Live stock over Server-Sent Events: `GET /v1/products/events`, public like the catalog. Each
stream is one call of inventory's WatchStock (server streaming; docs/patterns/streaming.md): the
gateway passes each response on as one `stock` event.

Everything that can refuse the request (an unknown or malformed SKU, inventory away or slow) is
decided on WatchStock's first response, before the stream starts, so a refusal is an ordinary
problem+json answer. Once streaming, when inventory's stream ends under it (a replica stopping,
a connection aged out) the gateway watches again, and the new call's first response (all current
levels) is one more `stock` event. If inventory stays away the stream ends: EventSource clients
reconnect by themselves after the `retry:` hint, and their first event gives the current levels
again, so there is nothing to resume and no event id."""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Final

import grpc
import structlog
from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from gateway import event_streams
from gateway.problem_openapi import problem_responses
from gateway.problems import Problem
from gateway.routes import PREFIX, UPSTREAM_FAILURES
from gateway.settings import GatewaySettings
from gateway.upstreams import Upstreams, UpstreamsDep
from orderflow_contracts.identifiers import SKU_PATTERN
from orderflow_contracts.inventory.v1 import inventory_pb2
from orderflow_kit.request_context import outgoing_metadata

log = structlog.get_logger()

STOCK_EVENT: Final = "stock"
# What the stream's opening comment calls it.
_NAME: Final = "live stock"
# What WatchStock's read() gives at the end of the stream (grpc-stubs does not declare it).
_END: Final[Any] = grpc.aio.EOF  # type: ignore[attr-defined]
# The most SKUs one stream may name (inventory's limit).
MAX_SKUS: Final = 1000
# When inventory's stream ends under a client (a replica stopping, a connection aged out), the
# gateway watches again: this many tries, waiting 0.2 s, 0.4 s... up to 2 s between them.
RESUME_ATTEMPTS: Final = 5
RESUME_FIRST_DELAY_SECONDS: Final = 0.2
RESUME_MAX_DELAY_SECONDS: Final = 2.0

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
            "content": event_streams.openapi_content(_NAME, _EXAMPLE),
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
    request = inventory_pb2.WatchStockRequest(skus=sku or [])
    try:
        watch = await _Watch.open(upstreams, request)
    except BaseException:
        give_back()
        raise

    async def events() -> AsyncIterator[ServerSentEvent]:
        yield event_streams.opening(_NAME, settings)
        async for response in watch.responses():
            yield ServerSentEvent(_levels_json(response), event=STOCK_EVENT)

    return event_streams.stream_response(events(), settings, give_back=give_back, close=watch.close)


class _Watch:
    """One client's WatchStock, watched again when inventory's stream ends under it: an inventory
    replica stopping, or a connection aged out (ORDERFLOW_GRPC_MAX_CONNECTION_AGE_SECONDS ends
    every call after it, plus a grace). The first response of the new call, all current levels,
    is passed on like any other, so the client misses nothing and sees no gap."""

    def __init__(self, upstreams: Upstreams, request: inventory_pb2.WatchStockRequest) -> None:
        self._upstreams = upstreams
        self._request = request
        self.call: Any = None
        self._first: inventory_pb2.WatchStockResponse | None = None

    @classmethod
    async def open(cls, upstreams: Upstreams, request: inventory_pb2.WatchStockRequest) -> "_Watch":
        """Its first response, or the refusal as a Problem (a gRPC error goes to grpc_problems.py)."""
        watch = cls(upstreams, request)
        watch._first = await watch._start()
        if watch._first is None:  # the replica was stopping
            raise Problem(503, "DEPENDENCY_UNAVAILABLE", "A service behind the gateway is unavailable; retry later.")
        return watch

    async def responses(self) -> AsyncIterator[inventory_pb2.WatchStockResponse]:
        response = self._first
        while response is not None:
            yield response
            try:
                response = await self.call.read()
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    log.info("live stock stream ended by inventory", grpc_status=error.code().name)
                    return
                response = _END
            if response is _END:
                response = await self._watch_again()

    def cancel(self) -> None:
        if self.call is not None:
            self.call.cancel()

    async def close(self) -> None:
        """The stream is over: its call goes too."""
        self.cancel()

    async def _start(self) -> inventory_pb2.WatchStockResponse | None:
        """A new call and its first response (None: it ended at once). No deadline on the call: it
        lasts as long as the client listens. Its first answer has one."""
        self.cancel()
        self.call = self._upstreams.inventory.WatchStock(self._request, metadata=outgoing_metadata())
        try:
            async with asyncio.timeout(self._upstreams.deadline_seconds):
                first = await self.call.read()
        except TimeoutError:
            self.cancel()
            raise Problem(
                504, "DEPENDENCY_TIMEOUT", "A service behind the gateway did not answer in time; retry later."
            ) from None
        except BaseException:
            self.cancel()
            raise
        return None if first is _END else first

    async def _watch_again(self) -> inventory_pb2.WatchStockResponse | None:
        """A new call's first response, after a few tries with backoff; None: give up (the client
        reconnects after the `retry:` hint)."""
        for attempt in range(RESUME_ATTEMPTS):
            try:
                first = await self._start()
            except (grpc.aio.AioRpcError, Problem) as error:
                log.info("live stock: inventory away, watching again", attempt=attempt + 1, error=str(error)[:200])
                first = None
            if first is not None:
                return first
            await asyncio.sleep(min(RESUME_MAX_DELAY_SECONDS, RESUME_FIRST_DELAY_SECONDS * 2**attempt))
        log.info("live stock stream ended: inventory stayed away")
        return None


def _levels_json(response: inventory_pb2.WatchStockResponse) -> str:
    levels = [{"sku": level.sku, "available": level.available} for level in response.levels]
    return json.dumps({"levels": levels}, separators=(",", ":"))
