"""The FastAPI application: routes, problem handlers, the request-context, rate-limit and
body-size middleware, the bearer token verifier, and a lifespan that opens the upstream channels
(and the rate limiter on their Redis) once per process and closes them at shutdown. Without a way
to verify tokens there is no app (gateway.auth.AuthNotConfigured)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig

from gateway import (
    admin_dead_letters,
    admin_faults,
    admin_pipeline,
    admin_reconciliation,
    health,
    live_events,
    metrics,
    order_import,
    restock,
    routes,
    stock_events,
)
from gateway.auth import TokenVerifier, known_customer
from gateway.body_limit import BodySizeLimitMiddleware
from gateway.idempotency import IdempotencyStore
from gateway.middleware import RequestContextMiddleware
from gateway.problem_handlers import install_problem_handlers
from gateway.problem_openapi import problem_responses, with_problem_media_type
from gateway.rate_limits import RateLimiter, RateLimitMiddleware, with_rate_limit_responses
from gateway.settings import GatewaySettings
from gateway.upstreams import Upstreams
from orderflow_kit import tracing

log = structlog.get_logger()


class _GatewayApp(FastAPI):
    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = with_problem_media_type(with_rate_limit_responses(super().openapi(), routes.PREFIX))
        return self.openapi_schema


def _telemetry() -> TelemetryConfig:
    """FastAPI's own OpenTelemetry: a server span per HTTP request (continuing the caller's
    traceparent) when tracing is on (orderflow_kit.tracing), with the process's provider; health
    probes are not traced. Off, it would still look for a provider on every request: all off
    then. Its metrics and logs stay off: orderflow's metrics and log lines are its own."""
    provider = tracing.tracer_provider()
    if provider is None:
        return {"tracing": False, "metrics": False, "logs": False}
    return {
        "tracing": True,
        "tracer_provider": provider,
        "operation_spans": False,
        "metrics": False,
        "logs": False,
        "exclude": lambda scope: scope.get("path") in health.PROBE_PATHS,
    }


def _size_and_internal_errors(settings: GatewaySettings) -> dict[int | str, dict[str, Any]]:
    responses = problem_responses(413, 500)
    responses[413]["description"] += (
        f" (a body larger than {settings.max_request_body_bytes} bytes, ORDERFLOW_MAX_REQUEST_BODY_BYTES)"
    )
    return responses


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upstreams = Upstreams.open(settings)
        app.state.upstreams = upstreams
        app.state.idempotency = IdempotencyStore.from_settings(upstreams.redis, settings)
        app.state.rate_limiter = RateLimiter.from_settings(settings, upstreams.redis)
        log.info(
            "started",
            port=settings.gateway_port,
            orders=settings.orders_addr,
            inventory=settings.inventory_addr,
            loyalty=settings.loyalty_addr,
        )
        try:
            yield
        finally:
            await upstreams.close()
            log.info("stopped")

    app = _GatewayApp(
        title="orderflow gateway",
        summary="REST in front of the orderflow gRPC services. Every error is application/problem+json.",
        version="1",
        lifespan=lifespan,
        telemetry=_telemetry(),
        # Any request may be refused for its size (a declared Content-Length is checked before routing).
        responses=_size_and_internal_errors(settings),
    )
    app.state.token_verifier = TokenVerifier.from_settings(settings)
    app.state.settings = settings
    app.state.open_feeds = live_events.OpenFeeds(settings.live_events_max_per_customer)
    app.state.open_stock_streams = stock_events.OpenStockStreams(settings.stock_events_max_open)
    # The last added runs first: the request context wraps the rate limits and the size limit, so a
    # 429 or a 413 has a request id; a client over its limit is refused before its body is read.
    # The import's body is a stream of lines, each held to the limit by the route itself.
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_request_body_bytes,
        path_limits={restock.PATH: restock.MAX_BODY_BYTES},
        streamed_paths={order_import.PATH},
    )
    public = [
        route.path
        for router in (routes.router, stock_events.router)
        for route in router.routes
        if isinstance(route, APIRoute)
    ]
    app.add_middleware(RateLimitMiddleware, prefix=routes.PREFIX, public_paths=public, known_customer=known_customer)
    app.add_middleware(RequestContextMiddleware)
    install_problem_handlers(app)
    for router in (
        routes.router,
        routes.authenticated,
        restock.router,
        order_import.router,
        live_events.router,
        stock_events.router,
        admin_dead_letters.router,
        admin_pipeline.router,
        admin_reconciliation.router,
        admin_faults.router,
        health.router,
        metrics.router,
    ):
        app.include_router(router)
    return app
