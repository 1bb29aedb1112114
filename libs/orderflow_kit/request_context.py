"""What travels with a request: the request id (gateway → orders → inventory → the event's
headers) and the W3C traceparent. Context variables carry them through async code."""

import secrets
import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "x-request-id"
TRACEPARENT_HEADER = "traceparent"

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
traceparent_var: ContextVar[str | None] = ContextVar("traceparent", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def new_traceparent() -> str:
    """A sampled W3C trace context with fresh trace and span ids."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def outgoing_metadata() -> tuple[tuple[str, str], ...]:
    """gRPC metadata that hands the current request's context to the next service."""
    pairs = ((REQUEST_ID_HEADER, request_id_var.get()), (TRACEPARENT_HEADER, traceparent_var.get()))
    return tuple((key, value) for key, value in pairs if value)
