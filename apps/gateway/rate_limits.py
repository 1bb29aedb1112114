"""Rate limits: a budget per client IP for every request under /v1, and one per customer (the
token's `sub`) for every authenticated request, kept in Redis so that all gateway replicas share them.

Each budget is GCRA (the generic cell rate algorithm: a token bucket kept as one timestamp per
client): a client may send `burst` requests at once and earns them back at `per_second`. A Lua
script reads, decides and writes the clients' keys in one step, on Redis's clock, so replicas
neither race nor disagree about the time. Not the `limits` library: it offers fixed, moving and
sliding windows, none with a sustained rate and a burst set apart, and its async Redis storage
opens a connection pool of its own beside the gateway's client. A refused request costs nothing.

One Redis call per request: RateLimitMiddleware counts the address, and the customer too when the
request's bearer token is one the gateway accepted lately (a cache look-up, gateway.auth; no token
is verified before the address's budget says yes). A token seen for the first time is verified by
gateway.auth.authenticate, which then counts its customer (`limit_customer`): a second call, once
per token. Public operations (the catalog) count the address only.

Over a budget: 429 RATE_LIMITED with `Retry-After`. Every answer under /v1, success or problem,
carries the budgets it was counted against as the RateLimit-Policy and RateLimit fields of
draft-ietf-httpapi-ratelimit-headers (structured fields, one member per policy):

    RateLimit-Policy: "ip";q=50;w=2, "customer";q=20;w=2
    RateLimit: "ip";r=49;t=1, "customer";r=19;t=1

`q` is the burst and `w` the seconds in which it is earned back; `r` is what may be sent now and
`t` the seconds until the whole burst is back.

Fail open: while Redis does not answer, requests pass unlimited. The outage is logged once, and
its end once, and Redis is not asked again for a few seconds, so an outage costs neither a log line
nor a timeout per request. /readyz reports it (gateway.health)."""

import asyncio
import ipaddress
import math
import time
from collections.abc import Awaitable, Callable, Collection
from contextvars import ContextVar
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

import structlog
from fastapi import Request
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.problems import PROBLEM_MEDIA_TYPE, Problem, problem_response
from gateway.settings import GatewaySettings
from orderflow_kit.metrics import child

REFUSALS = Counter(
    "orderflow_rate_limit_refusals_total", "Requests refused with 429, by budget: ip or customer", ["policy"]
)
for _policy in ("ip", "customer"):
    child(REFUSALS, _policy)  # each at 0 from the start

KEY_PREFIX: Final = "orderflow:rate-limit"
# While Redis does not answer, requests pass without asking it for this long.
REDIS_RETRY_SECONDS: Final = 2.0
# An IPv6 client is counted by its /64: one subscriber usually holds all of it.
IPV6_PREFIX_LENGTH: Final = 64

# KEYS: each client's key, holding its theoretical arrival time (TAT) in microseconds.
# ARGV: for each key in turn, the emission interval (microseconds per request) and the burst.
# Counts the request against each key in order and stops at the first that refuses it, so a request
# refused for its address is not counted against its customer. Returns, for each key counted:
# allowed (1/0), remaining, retry after and reset (microseconds).
_GCRA: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local decisions = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = math.max(tonumber(redis.call('GET', key) or now), now)
  local allow_at = tat + interval - burst * interval
  if now < allow_at then
    decisions[i] = {0, 0, allow_at - now, tat - now}
    return decisions
  end
  local new_tat = tat + interval
  redis.call('SET', key, string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
  decisions[i] = {1, math.floor((now - allow_at) / interval), 0, new_tat - now}
end
return decisions
"""

log = structlog.get_logger()


@dataclass(frozen=True)
class Policy:
    name: str
    per_second: float
    burst: int

    @property
    def interval_us(self) -> int:
        return max(1, round(1_000_000 / self.per_second))

    def key(self, client: str) -> str:
        """The client's Redis key under this policy. Rate and burst are part of it: a gateway with
        other limits (a change rolling out) never judges a client by arrival times of these."""
        return f"{KEY_PREFIX}:{self.name}:{self.interval_us}:{self.burst}:{client}"

    def field(self) -> str:
        """This policy's member of RateLimit-Policy."""
        return f'"{self.name}";q={self.burst};w={math.ceil(self.burst / self.per_second)}'


@dataclass(frozen=True)
class Decision:
    """One request counted against one policy."""

    policy: Policy
    allowed: bool
    remaining: int
    # Whole seconds, rounded up: a client that waits this long is served.
    retry_after_seconds: int
    reset_seconds: int

    def field(self) -> str:
        """This decision's member of RateLimit."""
        return f'"{self.policy.name}";r={self.remaining};t={self.reset_seconds}'


class RateLimiter:
    def __init__(self, redis: Redis, ip: Policy, customer: Policy, timeout_seconds: float) -> None:
        self.ip = ip
        self.customer = customer
        self._script = redis.register_script(_GCRA)
        self._timeout_seconds = timeout_seconds
        # While Redis does not answer: since when, and when to ask it again.
        self._down_since: float | None = None
        self._retry_at = 0.0

    @classmethod
    def from_settings(cls, settings: GatewaySettings, redis: Redis) -> "RateLimiter | None":
        if not settings.rate_limits_enabled:
            return None
        return cls(
            redis,
            Policy("ip", settings.rate_limit_ip_per_second, settings.rate_limit_ip_burst),
            Policy("customer", settings.rate_limit_customer_per_second, settings.rate_limit_customer_burst),
            settings.rate_limit_redis_timeout_seconds,
        )

    async def hit(self, *counted: tuple[Policy, str]) -> list[Decision] | None:
        """Count one request against each (policy, client) in turn, in one Redis call, up to the
        first that refuses it: the decisions made, a refusal last; None when Redis does not answer."""
        if self._down_since is not None and time.monotonic() < self._retry_at:
            return None
        keys = [policy.key(client) for policy, client in counted]
        args = [value for policy, _ in counted for value in (policy.interval_us, policy.burst)]
        try:
            async with asyncio.timeout(self._timeout_seconds):
                answers = await self._script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as error:
            self._unavailable(error)
            return None
        self._available()
        return [
            Decision(policy, bool(allowed), int(remaining), _seconds(int(retry_after_us)), _seconds(int(reset_us)))
            for (policy, _), (allowed, remaining, retry_after_us, reset_us) in zip(counted, answers, strict=False)
        ]

    def _unavailable(self, error: Exception) -> None:
        now = time.monotonic()
        self._retry_at = now + REDIS_RETRY_SECONDS
        if self._down_since is None:
            self._down_since = now
            log.warning("rate limits off: Redis does not answer, requests pass unlimited", error=repr(error))

    def _available(self) -> None:
        if self._down_since is not None:
            log.info("rate limits on again", off_seconds=round(time.monotonic() - self._down_since, 1))
            self._down_since = None


def _seconds(microseconds: int) -> int:
    return math.ceil(microseconds / 1_000_000)


# The decisions made for the request in flight, for RateLimitMiddleware to turn into fields.
_decisions: ContextVar[list[Decision] | None] = ContextVar("rate_limit_decisions", default=None)


def too_many_requests(decision: Decision, whom: str) -> Problem:
    child(REFUSALS, decision.policy.name).inc()
    wait = max(1, decision.retry_after_seconds)
    return Problem(
        HTTPStatus.TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        f"Too many requests from {whom}; retry in {wait} s.",
        headers={"Retry-After": str(wait)},
    )


def client_address(scope: Scope) -> str:
    """The address the request came from (uvicorn takes it from X-Forwarded-For when the
    connection comes from a trusted proxy, FORWARDED_ALLOW_IPS)."""
    client = scope.get("client")
    if not client:
        return "unknown"
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return str(client[0])
    if address.version == 6:
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX_LENGTH), strict=False))
    return str(address)


class RateLimitMiddleware:
    """Counts every request under `prefix` against its client address's budget before anything
    reads it, and against its customer's with the same call when `known_customer` names one (not
    on `public_paths`), and adds the fields of every budget the request was counted against to its
    answer."""

    def __init__(
        self,
        app: ASGIApp,
        prefix: str,
        public_paths: Collection[str],
        known_customer: Callable[[Scope], Awaitable[str | None]],
    ) -> None:
        self.app = app
        self.prefix = prefix
        self.public_paths = frozenset(public_paths)
        self.known_customer = known_customer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiter: RateLimiter | None = scope["app"].state.rate_limiter if scope["type"] == "http" else None
        path = scope["path"] if limiter is not None else ""
        if limiter is None or not is_limited(path, self.prefix):
            await self.app(scope, receive, send)
            return
        counted = [(limiter.ip, client_address(scope))]
        customer = None if path in self.public_paths else await self.known_customer(scope)
        if customer is not None:
            counted.append((limiter.customer, customer))
        decisions = await limiter.hit(*counted) or []

        async def send_with_fields(message: Message) -> None:
            if message["type"] == "http.response.start" and decisions:
                headers = MutableHeaders(scope=message)
                headers.append("RateLimit-Policy", ", ".join(decision.policy.field() for decision in decisions))
                headers.append("RateLimit", ", ".join(decision.field() for decision in decisions))
            await send(message)

        if decisions and not decisions[-1].allowed:
            whom = "this address" if decisions[-1].policy is limiter.ip else "this customer"
            await problem_response(too_many_requests(decisions[-1], whom), path)(scope, receive, send_with_fields)
            return
        token = _decisions.set(decisions)
        try:
            await self.app(scope, receive, send_with_fields)
        finally:
            _decisions.reset(token)


async def limit_customer(request: Request, customer_id: str) -> None:
    """Count an authenticated request against its customer's budget, unless RateLimitMiddleware
    did already: a 429 once it is spent."""
    limiter: RateLimiter | None = request.app.state.rate_limiter
    decisions = _decisions.get()
    if limiter is None or decisions is None or any(decision.policy is limiter.customer for decision in decisions):
        return
    answer = await limiter.hit((limiter.customer, customer_id))
    if not answer:
        return
    decisions.extend(answer)
    if not answer[-1].allowed:
        raise too_many_requests(answer[-1], "this customer")


def is_limited(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


# Documented once, under components/headers, and referred to by every answer of a limited operation.
_HEADERS: Final = {
    "RateLimit-Policy": {
        "description": 'Each budget this request counts against: `"ip";q=50;w=2` is a burst of 50, earned back '
        "in 2 s (draft-ietf-httpapi-ratelimit-headers). Absent while rate limits are off.",
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": 'What is left of each budget: `"ip";r=49;t=1` is 49 requests now, the whole burst back '
        "in 1 s. Absent while rate limits are off.",
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before the next request is served.",
        "schema": {"type": "integer", "minimum": 1},
    },
}


def _ref(header: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{header}"}


def with_rate_limit_responses(openapi: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Every operation under `prefix` may answer 429, and each of its answers carries the fields."""
    limited = [item for path, item in openapi.get("paths", {}).items() if is_limited(path, prefix)]
    if not limited:
        return openapi
    openapi.setdefault("components", {}).setdefault("headers", {}).update(_HEADERS)
    for item in limited:
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            responses[str(HTTPStatus.TOO_MANY_REQUESTS.value)] = {
                "description": HTTPStatus.TOO_MANY_REQUESTS.phrase,
                "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
                "headers": {"Retry-After": _ref("Retry-After")},
            }
            for response in responses.values():
                response.setdefault("headers", {}).update(
                    {name: _ref(name) for name in ("RateLimit-Policy", "RateLimit")}
                )
    return openapi
