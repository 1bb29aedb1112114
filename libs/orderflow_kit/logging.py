"""structlog set-up: JSON lines when not on a terminal, readable lines on one. Every line logged
while serving a call carries its request id, and no line shows a URL's password (orderflow_kit.redaction)."""

import logging
import sys
from typing import Literal

import structlog

from orderflow_kit.redaction import redact
from orderflow_kit.request_context import request_id_var


def configure_logging(service: str, fmt: Literal["auto", "json", "console"] = "auto", level: str = "INFO") -> None:
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_request_id,
            _add_service(service),
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info if as_json else structlog.dev.set_exc_info,
            redact_credentials,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
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


def _add_request_id(_logger: object, _method: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    request_id = request_id_var.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


def _add_service(service: str) -> structlog.typing.Processor:
    def add(_logger: object, _method: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
        event.setdefault("service", service)
        return event

    return add


def redact_credentials(_logger: object, _method: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """A URL may reach a log line in any value (an error message, a setting): mask its password."""
    return {key: redact(value) if isinstance(value, str) else value for key, value in event.items()}


class RedactCredentials(logging.Filter):
    """The same for the libraries that log through the standard logging module."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
