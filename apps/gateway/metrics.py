"""The gateway's Prometheus metrics at GET /metrics (public like /healthz, out of the API document):
every request's duration by method, route template and status code (counted in
RequestContextMiddleware), idempotency-key replays and conflicts (gateway.idempotency) and rate-limit
refusals (gateway.rate_limits). No label holds a customer, an order or a raw path."""

import asyncio

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Histogram, generate_latest

from orderflow_kit.metrics import DURATION_BUCKETS

router = APIRouter(include_in_schema=False)

# Its _count is the number of requests. `route` is the route's template (/v1/orders/{order_id}), or
# "unrouted" for a request answered before routing (a 429, a 404).
HTTP_DURATION = Histogram(
    "orderflow_http_server_request_duration_seconds",
    "Time the gateway took to answer a request, by method, route template and status code",
    ["method", "route", "code"],
    buckets=DURATION_BUCKETS,
)
UNROUTED = "unrouted"
# Any other method is counted as "OTHER": a label never takes a value a client made up.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@router.get("/metrics")
async def metrics() -> Response:
    # Rendered off the event loop: a scrape never holds up a request.
    body = await asyncio.to_thread(generate_latest, REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
