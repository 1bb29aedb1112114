"""Liveness and readiness for supervisors and load balancers: /healthz says the process answers,
/readyz says whether it can serve (every upstream answers), within a short timeout either way."""

from fastapi import APIRouter

from gateway.problems import Problem, problem_responses
from gateway.schemas import Alive, Ready
from gateway.upstreams import OK, UpstreamsDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Alive:
    return Alive(status="alive")


@router.get("/readyz", responses=problem_responses(503))
async def readyz(upstreams: UpstreamsDep) -> Ready:
    """200 when orders, inventory and loyalty report SERVING and Redis answers PING; else 503 NOT_READY."""
    checks = await upstreams.check()
    failing = [f"{name} {state}" for name, state in checks.items() if state != OK]
    if failing:
        raise Problem(503, "NOT_READY", f"Not ready: {', '.join(failing)}.", checks=checks)
    return Ready(status="ready", checks=checks)
