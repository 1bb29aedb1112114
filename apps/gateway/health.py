"""Liveness and readiness for supervisors and load balancers: /healthz says the process answers,
/readyz says whether it can serve (every gRPC service answers), within a short timeout either way.

Redis is not needed to serve: without it rate limits are off and idempotency keys are refused, so
/readyz stays 200 and says so in the Redis check."""

from typing import Final

from fastapi import APIRouter

from gateway.problem_openapi import problem_responses
from gateway.problems import Problem
from gateway.schemas import Alive, Ready
from gateway.upstreams import OK, REDIS, UpstreamsDep

WITHOUT_REDIS: Final = "rate limits off, idempotency keys refused"

router = APIRouter(tags=["health"])
# Asked every few seconds by supervisors and Prometheus: not traced (gateway.app).
PROBE_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})


@router.get("/healthz")
async def healthz() -> Alive:
    return Alive(status="alive")


@router.get("/readyz", responses=problem_responses(503))
async def readyz(upstreams: UpstreamsDep) -> Ready:
    """200 when orders, inventory and loyalty report SERVING, else 503 NOT_READY. Redis not answering
    PING does not make the gateway unready: its check says so, e.g. `unavailable (rate limits off, ...)`."""
    checks = await upstreams.check()
    if checks[REDIS] != OK:
        checks[REDIS] = f"{checks[REDIS]} ({WITHOUT_REDIS})"
    failing = [f"{name} {state}" for name, state in checks.items() if state != OK and name != REDIS]
    if failing:
        raise Problem(503, "NOT_READY", f"Not ready: {', '.join(failing)}.", checks=checks)
    return Ready(status="ready", checks=checks)
