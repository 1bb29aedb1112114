"""Rate limits against the running services and the real Redis: a second gateway process, beside
the pipeline's (whose limits are generous for the other tests), with a customer limit of a few
requests. Per-address limits, their refill and Redis outages: tests/integration/gateway/test_rate_limits.py."""

import dataclasses
import io
import time
from collections.abc import AsyncIterator, Iterator
from functools import partial

import httpx
import pytest

from orderflow_devstack.infra import free_port
from orderflow_devstack.processes import ServiceProcess
from orderflow_kit.probe import http_ok
from tests.e2e.support import new_customer, place
from tests.support.pipeline import Pipeline
from tests.support.tokens import as_admin, as_customer

CUSTOMER_BURST = 3
START_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def limited_gateway(pipeline: Pipeline) -> Iterator[str]:
    """`python -m gateway` on a port of its own, calling the pipeline's services, with a low
    per-customer limit (one request every 10 s after a burst of CUSTOMER_BURST)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spec = pipeline.services["gateway"].spec
    env = {
        **spec.env,
        "ORDERFLOW_GATEWAY_PORT": str(port),
        "ORDERFLOW_RATE_LIMIT_CUSTOMER_BURST": str(CUSTOMER_BURST),
        "ORDERFLOW_RATE_LIMIT_CUSTOMER_PER_SECOND": "0.1",
    }
    ready = partial(http_ok, f"{url}/readyz")
    gateway = ServiceProcess(dataclasses.replace(spec, name="gateway-limited", env=env, ready=ready), io.StringIO())
    gateway.start()
    try:
        gateway.wait_ready(time.monotonic() + START_TIMEOUT)
        yield url
    finally:
        gateway.stop()


@pytest.fixture
async def limited_api(limited_gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=limited_gateway, timeout=30, trust_env=False) as client:
        yield client


async def test_a_customer_over_its_limit_gets_a_429_problem_and_nothing_is_ordered(
    limited_api: httpx.AsyncClient,
) -> None:
    customer, neighbour = new_customer(), new_customer()
    answers = [await place(limited_api, customer, ("E2E-MUG", 1)) for _ in range(CUSTOMER_BURST + 1)]
    orders = await limited_api.get("/v1/orders", params={"customer_id": customer}, headers=as_customer(customer))
    neighbours = await place(limited_api, neighbour, ("E2E-MUG", 1))

    assert [answer.status_code for answer in answers] == [201] * CUSTOMER_BURST + [429]
    refused = answers[-1]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "RATE_LIMITED"
    assert int(refused.headers["retry-after"]) >= 1
    assert '"customer";q=3' in refused.headers["ratelimit-policy"]
    assert '"customer";r=0' in refused.headers["ratelimit"]
    assert orders.status_code == 429  # the listing is one request too many as well
    assert neighbours.status_code == 201  # another customer has its own allowance


async def test_the_refused_orders_were_never_placed(limited_api: httpx.AsyncClient) -> None:
    customer = new_customer()
    answers = [await place(limited_api, customer, ("E2E-MUG", 1)) for _ in range(CUSTOMER_BURST + 2)]
    # An admin reads them: its token is another customer, with an allowance of its own.
    listed = await limited_api.get("/v1/orders", params={"customer_id": customer}, headers=as_admin())

    assert [answer.status_code for answer in answers].count(429) == 2
    assert listed.status_code == 200, listed.text
    placed = {order["order_id"] for order in listed.json()["orders"]}
    assert placed == {answer.json()["order_id"] for answer in answers if answer.status_code == 201}
