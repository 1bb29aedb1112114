"""What travels with a request: the request id (gateway → orders → inventory → the event's
headers) and the W3C traceparent. Context variables carry them through async code.

With tracing on (orderflow_kit.tracing), the traceparent is the current span's, and the gRPC
instrumentation puts it in the outgoing metadata; with tracing off, the one the gateway took or
made travels as it is, so a request's id and trace id still lead from log line to log line."""

import secrets
import uuid
from contextvars import ContextVar

from orderflow_kit import tracing

REQUEST_ID_HEADER = "x-request-id"
TRACEPARENT_HEADER = "traceparent"

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
traceparent_var: ContextVar[str | None] = ContextVar("traceparent", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def new_traceparent() -> str:
    """A sampled W3C trace context with fresh trace and span ids."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def current_traceparent() -> str | None:
    """The current span's context when tracing is on, else the request's carried traceparent."""
    return tracing.current_traceparent() if tracing.enabled() else traceparent_var.get()


def outgoing_metadata() -> tuple[tuple[str, str], ...]:
    """gRPC metadata that hands the current request's context to the next service (with tracing
    on, the instrumentation adds the traceparent itself)."""
    traceparent = None if tracing.enabled() else traceparent_var.get()
    pairs = ((REQUEST_ID_HEADER, request_id_var.get()), (TRACEPARENT_HEADER, traceparent))
    return tuple((key, value) for key, value in pairs if value)
