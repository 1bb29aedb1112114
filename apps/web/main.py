"""Wiring only: settings, logging, and uvicorn serving the web app until SIGTERM."""

import math

import uvicorn

from orderflow_kit.logging import configure_logging
from web.app import create_app
from web.settings import WebSettings


async def main() -> None:
    settings = WebSettings()
    configure_logging("web", settings.log_format, settings.log_level)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.listen_host,
        port=settings.web_port,
        lifespan="on",
        http="httptools",
        log_config=None,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds),
    )
    await uvicorn.Server(config).serve()
