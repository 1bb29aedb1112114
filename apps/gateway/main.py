"""Wiring only: settings, logging, and uvicorn serving the app until SIGTERM. A gateway that
cannot verify bearer tokens says why and exits 2 instead of serving."""

import asyncio
import contextlib
import math
import signal
from collections.abc import Iterator

import structlog
import uvicorn

from gateway.app import create_app
from gateway.auth import AuthNotConfigured
from gateway.settings import GatewaySettings
from orderflow_kit.gc_freeze import freeze_start_up_objects
from orderflow_kit.telemetry import telemetry

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

log = structlog.get_logger()


class _Server(uvicorn.Server):
    """uvicorn re-raises the signal it caught once it has shut down, which would end the process as
    killed by SIGTERM; here the signal only starts the graceful shutdown and the process exits 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for signum in _STOP_SIGNALS:
            loop.add_signal_handler(signum, self.handle_exit, signum, None)
        try:
            yield
        finally:
            for signum in _STOP_SIGNALS:
                loop.remove_signal_handler(signum)


async def main() -> None:
    settings = GatewaySettings()
    with telemetry("gateway", settings):
        try:
            app = create_app(settings)
        except AuthNotConfigured as error:
            log.error("cannot start", reason=str(error))
            raise SystemExit(2) from None
        freeze_start_up_objects()
        config = uvicorn.Config(
            app,
            host=settings.listen_host,
            port=settings.gateway_port,
            lifespan="on",
            # The C parser: the pure-Python h11 one cost more CPU than a route. (The loop is uvloop's:
            # __main__ runs main() on it.)
            http="httptools",
            access_log=False,  # the middleware writes one line per request
            log_config=None,  # keep the logging orderflow_kit.telemetry set up
            timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds),
        )
        await _Server(config).serve()
