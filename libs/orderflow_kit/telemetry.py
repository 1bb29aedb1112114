"""A service process's logs and traces, set up together first thing in its main (tracing before
any channel, server or engine exists, so that each is instrumented) and flushed at its end."""

from collections.abc import Iterator
from contextlib import contextmanager

from orderflow_kit.logging import configure_logging
from orderflow_kit.settings import Settings
from orderflow_kit.tracing import configure_tracing, shutdown_tracing


@contextmanager
def telemetry(service: str, settings: Settings) -> Iterator[None]:
    """Logging as `settings` say and tracing as the OTEL_* variables say, for the block that runs
    `service`; the spans still buffered are sent when it ends."""
    configure_logging(service, settings.log_format, settings.log_level)
    configure_tracing(service)
    try:
        yield
    finally:
        shutdown_tracing()
