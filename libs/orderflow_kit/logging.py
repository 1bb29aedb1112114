"""structlog set-up: JSON lines when not on a terminal, readable lines on one. Every line logged
while serving a call carries its request id, every line logged inside a span its trace_id and
span_id (orderflow_kit.tracing), and no line shows a URL's password (orderflow_kit.redaction).

A service writes a line per request or event, so a line must cost little: JSON lines are rendered
by orjson straight to bytes and written together, at most 50 writes a second
(orderflow_kit.log_output), and a value is run through the redaction regexes only when a cheap
test says it could hold a URL with a secret."""

import logging
import sys
from collections.abc import Callable
from typing import Literal

import orjson
import structlog
from opentelemetry import trace

from orderflow_kit import log_output, tracing
from orderflow_kit.redaction import redact
from orderflow_kit.request_context import request_id_var


def configure_logging(service: str, fmt: Literal["auto", "json", "console"] = "auto", level: str = "INFO") -> None:
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor
    logger_factory: Callable[..., structlog.typing.WrappedLogger]
    if as_json:
        # OPT_NON_STR_KEYS: a dict with int keys in a log call is rendered, as json.dumps would, not refused.
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps, option=orjson.OPT_NON_STR_KEYS)
        logger_factory = log_output.BufferedLoggerFactory(log_output.stderr())
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        logger_factory = structlog.PrintLoggerFactory(sys.stderr)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_context(service),
            add_trace_context,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info if as_json else structlog.dev.set_exc_info,
            redact_credentials,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )
    # Libraries that use the standard logging module (uvicorn, faststream, alembic) print through
    # it at WARNING and up, so the service's own lines stay the one place to read.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format=f"{service} %(name)s %(levelname)s %(message)s"
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(existing, RedactCredentials) for existing in handler.filters):
            handler.addFilter(RedactCredentials())


def _add_context(service: str) -> structlog.typing.Processor:
    """The service's name, and the request id of the call being served, if any."""

    def add(_logger: object, _method: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
        request_id = request_id_var.get()
        if request_id is not None:
            event.setdefault("request_id", request_id)
        event.setdefault("service", service)
        return event

    return add


def add_trace_context(_logger: object, _method: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """The current span's trace_id and span_id (as trace back ends show them: hex), when there is one."""
    if tracing.enabled():
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            event.setdefault("trace_id", format(span_context.trace_id, "032x"))
            event.setdefault("span_id", format(span_context.span_id, "016x"))
    return event


def redact_credentials(_logger: object, _method: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """A URL may reach a log line in any value (an error message, a setting): mask its password.
    The event dict is this line's own, so a value is replaced in place, and only when it needs it."""
    for key, value in event.items():
        if isinstance(value, str) and "://" in value:  # no URL without one; redact() tests the rest
            event[key] = redact(value)
    return event


class RedactCredentials(logging.Filter):
    """The same for the libraries that log through the standard logging module."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
