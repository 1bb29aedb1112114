"""What the gateway's Server-Sent Events streams share (gateway.live_events, gateway.stock_events):
how a stream opens, how the OpenAPI document shows one, and a response that gives its slot back
and closes what feeds it however the stream ends: the client goes, the gateway stops, or
something fails."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from gateway.settings import GatewaySettings

EVENT_STREAM: Final = "text/event-stream"
# Closing what feeds a stream (a live event feed deletes its consumers: a few broker requests) is bounded.
CLOSE_TIMEOUT_SECONDS: Final = 5.0


def opening(name: str, settings: GatewaySettings) -> ServerSentEvent:
    """A stream's first event: a comment naming it, and how long a client waits before it reconnects."""
    return ServerSentEvent(comment=f"orderflow {name}", retry=settings.live_events_retry_ms)


def openapi_content(name: str, events: str) -> dict[str, Any]:
    """A stream's content as the OpenAPI document shows it: an example of its opening (with the
    default retry hint) followed by `events`."""
    first_lines = f": orderflow {name}\nretry: {GatewaySettings.model_fields['live_events_retry_ms'].default}\n\n"
    return {EVENT_STREAM: {"schema": {"type": "string"}, "example": first_lines + events}}


def stream_response(
    events: AsyncIterator[ServerSentEvent],
    settings: GatewaySettings,
    *,
    give_back: Callable[[], None],
    close: Callable[[], Awaitable[None]],
) -> EventSourceResponse:
    """`events`, with a heartbeat comment every ORDERFLOW_LIVE_EVENTS_HEARTBEAT_SECONDS; a client that
    stops reading (but keeps the connection) ends the stream after two missed heartbeats."""
    heartbeat = settings.live_events_heartbeat_seconds
    return _ClosingResponse(give_back, close, events, ping=heartbeat, send_timeout=2 * heartbeat)


class _ClosingResponse(EventSourceResponse):
    def __init__(
        self, give_back: Callable[[], None], close: Callable[[], Awaitable[None]], *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._give_back = give_back
        self._close = close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._give_back()
            with anyio.move_on_after(CLOSE_TIMEOUT_SECONDS, shield=True):
                await self._close()
