"""What every request gets, in one ASGI middleware: a request id and, when tracing is off, a W3C
traceparent (the caller's when well-formed, else new) in the context for log lines and outgoing gRPC
metadata, the X-Request-Id response header, one access log line, its duration in the request metric
(gateway.metrics), and a 500 problem, never a traceback, when
something unexpected escapes a route.

It wraps the app directly (not BaseHTTPMiddleware) so a route runs in the same context: an
`order_id` a route binds with structlog.contextvars shows up in the access line."""

import re
import time
from http import HTTPStatus
from typing import Final

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import HTTP_DURATION, KNOWN_METHODS, UNROUTED
from gateway.problems import internal_error, problem_response
from orderflow_kit import tracing
from orderflow_kit.metrics import observe_seconds
from orderflow_kit.request_context import (
    REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    new_request_id,
    new_traceparent,
    request_id_var,
    traceparent_var,
)

_SANE_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# version-traceid-parentid-flags; version ff and all-zero ids are invalid (W3C Trace Context).
_TRACEPARENT: Final = re.compile(r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")

log = structlog.get_logger()


def _accepted(value: str | None, shape: re.Pattern[str]) -> str | None:
    return value if value is not None and shape.fullmatch(value) else None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = _accepted(headers.get(REQUEST_ID_HEADER), _SANE_REQUEST_ID) or new_request_id()
        # With tracing on, the request's server span (FastAPI's telemetry, around this) is the trace
        # context; without it, the caller's traceparent (or a new one) travels on as it is.
        traceparent = (
            None if tracing.enabled() else _accepted(headers.get(TRACEPARENT_HEADER), _TRACEPARENT) or new_traceparent()
        )
        structlog.contextvars.clear_contextvars()
        request_id_token = request_id_var.set(request_id)
        traceparent_token = traceparent_var.set(traceparent)
        started = time.perf_counter()
        status = HTTPStatus.INTERNAL_SERVER_ERROR.value
        response_started = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        failure: Exception | None = None
        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception as error:
            failure = error
            if response_started:
                raise
            await problem_response(internal_error(), scope["path"])(scope, receive, send_with_request_id)
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"]
            route = scope.get("route")
            observe_seconds(
                HTTP_DURATION,
                elapsed,
                method if method in KNOWN_METHODS else "OTHER",
                getattr(route, "path", UNROUTED),
                str(status),
            )
            ms = round(elapsed * 1000, 1)
            line = {"method": method, "path": scope["path"], "status": status, "ms": ms}
            if failure is not None:
                log.error("request", **line, exc_info=failure)
            elif status >= HTTPStatus.INTERNAL_SERVER_ERROR:
                log.warning("request", **line)
            else:
                log.info("request", **line)
            request_id_var.reset(request_id_token)
            traceparent_var.reset(traceparent_token)
