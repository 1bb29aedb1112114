"""Rate limits (gateway.rate_limits) over real HTTP (uvicorn) with the session's real Redis: a
customer over its limit gets a 429 problem with Retry-After and the RateLimit fields while another
customer is served; a client address over its limit likewise on a public endpoint, while another
address is served; a request counts once against its customer, and the public catalog not at all;
a spent budget comes back after Retry-After; health is never limited; and
without Redis every request is served, and that is logged once (test_readiness: what /readyz says).

Each test limits its own customers and addresses (a client connects from its own 127.x.y.z), so
no test meets another's budget in the shared Redis."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
import structlog
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.rate_limits import Policy, RateLimiter
from gateway.settings import GatewaySettings
from orderflow_devstack.infra import Infrastructure, free_port
from tests.integration.gateway.conftest import over_http
from tests.integration.gateway.fakes import Fakes
from tests.support.polling import eventually
from tests.support.tokens import as_customer

BURST = 3
# So slow that no request earns anything back while a test runs.
TRICKLE = 0.01
PROBLEM = "application/problem+json"

Gateway = Callable[..., AbstractAsyncContextManager[str]]


def new_customer() -> str:
    return f"c-limits-{uuid.uuid4().hex[:12]}"


def new_address() -> str:
    """A loopback address of the test's own, away from 127.0.0.1 where the other tests connect from."""
    a, b, c = uuid.uuid4().bytes[:3]
    return f"127.{max(a, 1)}.{b}.{max(c, 1)}"


def client(base_url: str, address: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=base_url, transport=transport, trust_env=False)


@pytest.fixture
def gateway(settings: GatewaySettings) -> Gateway:
    """The gateway over real HTTP with these settings changed."""

    def serving(**changes: object) -> AbstractAsyncContextManager[str]:
        return over_http(create_app(settings.model_copy(update=changes)))

    return serving


@asynccontextmanager
async def one_request_per_address(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    """A client from an address of its own, to a gateway that lets an address make one request
    and earn no other while the test runs."""
    async with (
        gateway(rate_limit_ip_per_second=TRICKLE, rate_limit_ip_burst=1) as url,
        client(url, new_address()) as api,
    ):
        yield api


async def balance(api: httpx.AsyncClient, customer: str) -> httpx.Response:
    """An authenticated request: counted against the customer's budget and the address's."""
    return await api.get(f"/v1/customers/{customer}/loyalty", headers=as_customer(customer))


def fields(response: httpx.Response) -> tuple[str, str]:
    return response.headers["ratelimit-policy"], response.headers["ratelimit"]


async def test_a_customer_over_its_limit_gets_a_429_problem_and_another_customer_is_served(
    gateway: Gateway, fakes: Fakes
) -> None:
    customer, other = new_customer(), new_customer()
    async with (
        gateway(rate_limit_customer_per_second=TRICKLE, rate_limit_customer_burst=BURST) as url,
        client(url) as api,
    ):
        served = [await balance(api, customer) for _ in range(BURST)]
        refused = await balance(api, customer)
        others = await balance(api, other)

    assert [response.status_code for response in served] == [200] * BURST
    assert [fields(response)[1].split(", ")[1] for response in served] == [
        '"customer";r=2;t=100',
        '"customer";r=1;t=200',
        '"customer";r=0;t=300',
    ]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == PROBLEM
    problem = refused.json()
    assert problem["code"] == "RATE_LIMITED"
    assert problem["type"] == "https://orderflow.dev/problems/rate-limited"
    assert problem["title"] == "Too many requests"
    assert problem["request_id"] == refused.headers["x-request-id"]
    assert 0 < int(refused.headers["retry-after"]) <= 1 / TRICKLE
    policy, remaining = fields(refused)
    assert policy == '"ip";q=100000;w=1, "customer";q=3;w=300'
    assert remaining.startswith('"ip";r=')
    assert remaining.endswith('"customer";r=0;t=300')
    assert len(fakes.loyalty.behaviour.calls) == BURST + 1  # the refused request reached no service
    assert others.status_code == 200
    assert fields(others)[1].endswith('"customer";r=2;t=100')


async def test_an_address_over_its_limit_gets_a_429_on_a_public_endpoint_and_another_address_is_served(
    gateway: Gateway, fakes: Fakes
) -> None:
    address, other = new_address(), new_address()
    async with gateway(rate_limit_ip_per_second=TRICKLE, rate_limit_ip_burst=BURST) as url:
        async with client(url, address) as api:
            served = [await api.get("/v1/products") for _ in range(BURST)]
            refused = await api.get("/v1/products")
        async with client(url, other) as api:
            others = await api.get("/v1/products")

    assert [response.status_code for response in served] == [200] * BURST
    assert [fields(response) for response in served] == [
        ('"ip";q=3;w=300', '"ip";r=2;t=100'),
        ('"ip";q=3;w=300', '"ip";r=1;t=200'),
        ('"ip";q=3;w=300', '"ip";r=0;t=300'),
    ]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["code"] == "RATE_LIMITED"
    assert "this address" in refused.json()["detail"]
    assert 0 < int(refused.headers["retry-after"]) <= 1 / TRICKLE
    assert fields(refused) == ('"ip";q=3;w=300', '"ip";r=0;t=300')
    assert len(fakes.inventory.behaviour.calls) == BURST + 1  # the refused request reached no service
    assert others.status_code == 200


async def test_an_address_over_its_limit_is_refused_before_its_token_is_looked_at(gateway: Gateway) -> None:
    async with one_request_per_address(gateway) as api:
        unauthenticated = await api.get("/v1/orders", params={"customer_id": "c-1"})
        refused = await api.get("/v1/orders", params={"customer_id": "c-1"}, headers=as_customer("c-1"))

    assert unauthenticated.status_code == 401
    assert refused.status_code == 429
    assert fields(refused) == ('"ip";q=1;w=100', '"ip";r=0;t=100')


async def test_a_request_counts_once_against_its_customer_and_the_public_catalog_not_at_all(gateway: Gateway) -> None:
    """A token's first request is counted after it is verified, the next ones with the address
    (the token is remembered): either way once; the catalog counts the address only."""
    customer = new_customer()
    headers = as_customer(customer)
    async with (
        gateway(rate_limit_customer_per_second=TRICKLE, rate_limit_customer_burst=BURST) as url,
        client(url) as api,
    ):
        first = await api.get(f"/v1/customers/{customer}/loyalty", headers=headers)
        catalog = await api.get("/v1/products", headers=headers)
        second = await api.get(f"/v1/customers/{customer}/loyalty", headers=headers)

    assert [first.status_code, catalog.status_code, second.status_code] == [200, 200, 200]
    assert fields(first)[1].endswith('"customer";r=2;t=100')
    assert fields(catalog)[0] == '"ip";q=100000;w=1'
    assert fields(second)[1].endswith('"customer";r=1;t=200')


async def test_a_spent_budget_comes_back_after_retry_after(gateway: Gateway) -> None:
    customer = new_customer()
    async with (
        gateway(rate_limit_customer_per_second=2.0, rate_limit_customer_burst=2) as url,
        client(url) as api,
    ):
        refused = await eventually(lambda: balance(api, customer), lambda answer: answer.status_code == 429)
        await asyncio.sleep(int(refused.headers["retry-after"]))
        served = await eventually(lambda: balance(api, customer), lambda answer: answer.status_code == 200, within=2)

    assert served.status_code == 200


async def test_health_and_the_api_documents_are_never_limited(gateway: Gateway) -> None:
    async with one_request_per_address(gateway) as api:
        answers = [await api.get(path) for path in ["/healthz", "/readyz", "/openapi.json", "/docs"] * 2]

    assert [response.status_code for response in answers] == [200] * len(answers)
    assert not any("ratelimit" in response.headers for response in answers)


async def test_without_redis_every_request_is_served_and_the_outage_is_logged_once(gateway: Gateway) -> None:
    customer = new_customer()
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    with structlog.testing.capture_logs() as logs:
        async with (
            gateway(redis_url=unreachable, rate_limit_ip_burst=1, rate_limit_customer_burst=1) as url,
            client(url) as api,
        ):
            answers = [await api.get("/v1/products") for _ in range(3)]
            answers += [await balance(api, customer) for _ in range(3)]

    assert [response.status_code for response in answers] == [200] * 6
    assert not any("ratelimit" in response.headers for response in answers)
    warnings = [line for line in logs if line["event"].startswith("rate limits off")]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"


async def test_with_rate_limits_off_nothing_is_limited_or_announced(gateway: Gateway) -> None:
    address = new_address()
    async with (
        gateway(rate_limits_enabled=False, rate_limit_ip_burst=1) as url,
        client(url, address) as api,
    ):
        answers = [await api.get("/v1/products") for _ in range(3)]

    assert [response.status_code for response in answers] == [200] * 3
    assert not any("ratelimit" in response.headers for response in answers)


async def test_gateways_with_other_limits_over_one_redis_never_judge_a_client_by_each_others_counts(
    infra: Infrastructure,
) -> None:
    """A limit change rolls out gateway by gateway: a client spent under the old, stricter limit is
    served under the new one, and the other way round."""
    redis = Redis.from_url(infra.redis_url)
    strict, generous = Policy("customer", per_second=0.1, burst=1), Policy("customer", per_second=100.0, burst=100)
    limiter = RateLimiter(redis, ip=strict, customer=strict, timeout_seconds=1.0)
    client = f"c-policies-{uuid.uuid4().hex[:8]}"
    try:
        spent = [await limiter.hit((strict, client)) for _ in range(2)]
        under_the_generous_policy = await limiter.hit((generous, client))
    finally:
        await redis.aclose()

    assert [[decision.allowed for decision in decisions or []] for decisions in spent] == [[True], [False]]
    assert under_the_generous_policy is not None
    assert [decision.allowed for decision in under_the_generous_policy] == [True]
