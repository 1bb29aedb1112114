"""Idempotency-Key on POST /v1/orders, through the gateway's HTTP handling in front of a fake
orders service over real gRPC, with the keys in the session's real Redis: a repeat replays the
first answer and never orders again; another body is a 422, a repeat in flight a 409; a 5xx is
not kept; keys are per customer, kept 24 h; without Redis a keyed request orders nothing."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
import pytest
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.idempotency import IN_FLIGHT_MARGIN_SECONDS, KEY_HEADER, REPLAYED_HEADER, client_request_id, record_key
from gateway.settings import GatewaySettings
from orderflow_contracts.identifiers import is_client_request_id
from orderflow_devstack.infra import Infrastructure, free_port
from orderflow_kit.errors import ServiceError, aborted, failed_precondition, unavailable
from tests.integration.gateway.conftest import DEADLINE_SECONDS, client_of
from tests.integration.gateway.fakes import Fakes
from tests.integration.gateway.test_routes import new_customer
from tests.support.outages import Outage
from tests.support.polling import eventually
from tests.support.tokens import as_customer

ORDER = {"items": [{"sku": "SKU-1", "quantity": 2}, {"sku": "SKU-2", "quantity": 1}]}


@pytest.fixture
async def redis(infra: Infrastructure) -> AsyncIterator[Redis]:
    client = Redis.from_url(infra.redis_url)
    yield client
    await client.aclose()


def new_key() -> str:
    return str(uuid.uuid4())


async def place(
    gateway: httpx.AsyncClient, customer_id: str, key: str | None, order: dict[str, Any] = ORDER
) -> httpx.Response:
    headers = as_customer(customer_id) | ({KEY_HEADER: key} if key is not None else {})
    return await gateway.post("/v1/orders", json=order, headers=headers)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code
    return problem


async def test_a_repeat_with_the_same_key_and_body_replays_the_first_answer_and_orders_once(
    gateway: httpx.AsyncClient, fakes: Fakes
) -> None:
    customer_id, key = new_customer(), new_key()
    first = await place(gateway, customer_id, key)
    # The same order as the gateway understands it: other spacing, key order and line order, and
    # the token's customer named in the body.
    same = json.dumps({"items": ORDER["items"][::-1], "customer_id": customer_id}, indent=4)
    repeat = await gateway.post(
        "/v1/orders",
        content=same,
        headers={"content-type": "application/json", KEY_HEADER: key, **as_customer(customer_id)},
    )

    assert first.status_code == 201, first.text
    assert REPLAYED_HEADER not in first.headers
    assert repeat.status_code == 201
    assert repeat.headers[REPLAYED_HEADER] == "true"
    assert repeat.content == first.content
    assert repeat.headers["location"] == first.headers["location"]
    assert repeat.headers["content-type"] == "application/json"
    assert len(fakes.orders.create_requests) == 1
    assert fakes.orders.create_requests[0].client_request_id == client_request_id(key)


async def test_the_quoted_and_the_bare_key_are_the_same_key(gateway: httpx.AsyncClient, fakes: Fakes) -> None:
    customer_id, key = new_customer(), new_key()
    first = await place(gateway, customer_id, f'"{key}"')
    repeat = await place(gateway, customer_id, key)

    assert first.status_code == 201, first.text
    assert repeat.headers[REPLAYED_HEADER] == "true"
    assert repeat.json() == first.json()
    assert len(fakes.orders.create_requests) == 1


@pytest.mark.parametrize(
    "key",
    [
        "k",
        "x" * 255,
        '"with spaces, \\"quotes\\" and \\\\ backslashes"',
        '"' + "y" * 255 + '"',
        "!#$%&'()*+,-./:;<=>?@[]^_`{|}~",
    ],
)
async def test_any_sane_key_is_taken_and_gives_orders_a_valid_client_request_id(
    gateway: httpx.AsyncClient, fakes: Fakes, key: str
) -> None:
    response = await place(gateway, new_customer(), key)

    assert response.status_code == 201, response.text
    [request] = fakes.orders.create_requests
    assert is_client_request_id(request.client_request_id)


@pytest.mark.parametrize(
    "header",
    [
        b"",
        b"x" * 256,
        b'"' + b"x" * 256 + b'"',
        b"two words",
        b'"unterminated',
        b'"bad \\escape"',
        b"caf\xc3\xa9",
        b'"\xc3\xa9"',
        b"tab\there",
    ],
)
async def test_an_invalid_key_is_a_400_and_orders_nothing(
    gateway: httpx.AsyncClient, fakes: Fakes, header: bytes
) -> None:
    headers = [(KEY_HEADER.encode(), header)] + [
        (name.encode(), value.encode()) for name, value in as_customer(new_customer()).items()
    ]
    response = await gateway.post("/v1/orders", json=ORDER, headers=headers)

    assert_problem(response, 400, "IDEMPOTENCY_KEY_INVALID")
    assert fakes.orders.create_requests == []


async def test_two_key_headers_are_a_400(gateway: httpx.AsyncClient, fakes: Fakes) -> None:
    headers = [(KEY_HEADER, new_key()), (KEY_HEADER, new_key()), *as_customer(new_customer()).items()]
    response = await gateway.post("/v1/orders", json=ORDER, headers=headers)

    assert_problem(response, 400, "IDEMPOTENCY_KEY_INVALID")
    assert fakes.orders.create_requests == []


async def test_the_same_key_with_other_items_is_a_422(gateway: httpx.AsyncClient, fakes: Fakes) -> None:
    customer_id, key = new_customer(), new_key()
    first = await place(gateway, customer_id, key)
    other = await place(gateway, customer_id, key, {"items": [{"sku": "SKU-1", "quantity": 3}]})

    assert first.status_code == 201, first.text
    problem = assert_problem(other, 422, "IDEMPOTENCY_KEY_REUSED")
    assert problem["type"] == "https://orderflow.dev/problems/idempotency-key-reused"
    assert len(fakes.orders.create_requests) == 1


async def test_orders_refusing_a_reused_client_request_id_is_the_same_422(
    gateway: httpx.AsyncClient, fakes: Fakes
) -> None:
    """What orders answers when the key's record is gone (expired, lost) and the body differs."""
    fakes.orders.behaviour.failure = failed_precondition(
        "CLIENT_REQUEST_ID_REUSED", "client_request_id x already placed order y with other items", order_id="y"
    )

    response = await place(gateway, new_customer(), new_key())

    problem = assert_problem(response, 422, "IDEMPOTENCY_KEY_REUSED")
    assert "client_request_id" not in problem["detail"]


async def test_a_repeat_while_the_first_is_in_flight_is_a_409_with_retry_after(
    gateway: httpx.AsyncClient, fakes: Fakes, redis: Redis
) -> None:
    customer_id, key = new_customer(), new_key()
    fakes.orders.behaviour.held = asyncio.Event()
    first = asyncio.create_task(place(gateway, customer_id, key))
    await asyncio.wait_for(fakes.orders.behaviour.called.wait(), timeout=10)

    concurrent = await place(gateway, customer_id, key)
    claim_ttl_ms = await redis.pttl(record_key(customer_id, key))
    fakes.orders.behaviour.held.set()
    answered = await first
    later = await place(gateway, customer_id, key)

    assert_problem(concurrent, 409, "IDEMPOTENCY_KEY_IN_FLIGHT")
    assert int(concurrent.headers["retry-after"]) >= 1
    # The claim expires by itself, so a gateway that dies mid-request does not block the key for long.
    assert 0 < claim_ttl_ms <= (DEADLINE_SECONDS + IN_FLIGHT_MARGIN_SECONDS) * 1000
    assert answered.status_code == 201, answered.text
    assert later.headers[REPLAYED_HEADER] == "true"
    assert later.json() == answered.json()
    assert len(fakes.orders.create_requests) == 1


async def test_an_expired_claim_frees_the_key_and_the_late_answer_does_not_overwrite_the_new_one(
    gateway: httpx.AsyncClient, fakes: Fakes, redis: Redis
) -> None:
    """As if the gateway holding the claim had died: once the claim expires the key serves again,
    with the same client_request_id (orders would answer the same order); the first request's
    late answer does not replace the one now stored."""
    customer_id, key = new_customer(), new_key()
    fakes.orders.behaviour.held = release_first = asyncio.Event()
    first = asyncio.create_task(place(gateway, customer_id, key))
    await asyncio.wait_for(fakes.orders.behaviour.called.wait(), timeout=10)
    fakes.orders.behaviour.held = None  # only the first call waits
    await redis.pexpire(record_key(customer_id, key), 1)
    await eventually(lambda: redis.exists(record_key(customer_id, key)), lambda n: n == 0, what="the claim expired")

    second = await place(gateway, customer_id, key)
    release_first.set()
    late = await first
    replay = await place(gateway, customer_id, key)

    assert second.status_code == 201, second.text
    assert late.status_code == 201, late.text
    assert replay.headers[REPLAYED_HEADER] == "true"
    assert replay.json() == second.json()
    assert {request.client_request_id for request in fakes.orders.create_requests} == {client_request_id(key)}


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (unavailable("INVENTORY_UNAVAILABLE", "inventory could not be reached"), 503),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.INTERNAL, 502),
    ],
)
async def test_a_5xx_is_not_kept_so_a_retry_with_the_same_key_runs(
    gateway: httpx.AsyncClient, fakes: Fakes, redis: Redis, failure: ServiceError | grpc.StatusCode, status: int
) -> None:
    customer_id, key = new_customer(), new_key()
    fakes.orders.behaviour.failure = failure
    failed = await place(gateway, customer_id, key)
    kept = await redis.exists(record_key(customer_id, key))
    fakes.orders.behaviour.failure = None
    retried = await place(gateway, customer_id, key)

    assert failed.status_code == status, failed.text
    assert kept == 0
    assert retried.status_code == 201, retried.text
    assert REPLAYED_HEADER not in retried.headers
    assert [request.client_request_id for request in fakes.orders.create_requests] == [client_request_id(key)] * 2


async def test_a_504_is_not_kept(gateway: httpx.AsyncClient, fakes: Fakes, redis: Redis) -> None:
    customer_id, key = new_customer(), new_key()
    fakes.orders.behaviour.held = asyncio.Event()  # never set: the deadline passes

    timed_out = await place(gateway, customer_id, key)

    assert_problem(timed_out, 504, "DEPENDENCY_TIMEOUT")
    assert await redis.exists(record_key(customer_id, key)) == 0


async def test_orders_saying_the_request_is_in_flight_is_a_409_that_is_not_kept(
    gateway: httpx.AsyncClient, fakes: Fakes, redis: Redis
) -> None:
    """After a 504, the first placement may still be running in orders: the retry is told to come
    back (409 with Retry-After), and that is not the key's answer; the next retry gets the order."""
    customer_id, key = new_customer(), new_key()
    fakes.orders.behaviour.failure = aborted("CLIENT_REQUEST_IN_FLIGHT", "client_request_id x is being placed")
    in_flight = await place(gateway, customer_id, key)
    kept = await redis.exists(record_key(customer_id, key))
    fakes.orders.behaviour.failure = None
    retried = await place(gateway, customer_id, key)

    assert_problem(in_flight, 409, "IDEMPOTENCY_KEY_IN_FLIGHT")
    assert in_flight.headers["retry-after"] == "1"
    assert REPLAYED_HEADER not in in_flight.headers
    assert kept == 0
    assert retried.status_code == 201, retried.text
    assert REPLAYED_HEADER not in retried.headers


async def test_a_final_refusal_is_kept_and_replayed(gateway: httpx.AsyncClient, fakes: Fakes) -> None:
    """OUT_OF_STOCK is the request's answer (nothing was reserved): a repeat gets it again, even
    once stock is back; a new attempt needs a new key."""
    customer_id, key = new_customer(), new_key()
    fakes.orders.behaviour.failure = failed_precondition("OUT_OF_STOCK", "not enough stock for SKU-1", skus="SKU-1")
    refused = await place(gateway, customer_id, key)
    fakes.orders.behaviour.failure = None
    repeat = await place(gateway, customer_id, key)

    assert_problem(refused, 409, "OUT_OF_STOCK")
    assert_problem(repeat, 409, "OUT_OF_STOCK")
    assert repeat.headers[REPLAYED_HEADER] == "true"
    assert repeat.content == refused.content
    assert len(fakes.orders.create_requests) == 1


async def test_keys_are_per_customer(gateway: httpx.AsyncClient, fakes: Fakes) -> None:
    key = new_key()
    alice = await place(gateway, new_customer(), key)
    bob = await place(gateway, new_customer(), key)

    assert (alice.status_code, bob.status_code) == (201, 201)
    assert REPLAYED_HEADER not in bob.headers
    assert alice.json()["order_id"] != bob.json()["order_id"]
    assert len(fakes.orders.create_requests) == 2


async def test_an_answer_is_kept_for_the_configured_ttl(
    gateway: httpx.AsyncClient, settings: GatewaySettings, redis: Redis
) -> None:
    customer_id, key = new_customer(), new_key()
    await place(gateway, customer_id, key)

    ttl = await redis.ttl(record_key(customer_id, key))

    assert settings.idempotency_key_ttl_seconds == 24 * 60 * 60
    assert settings.idempotency_key_ttl_seconds - 60 < ttl <= settings.idempotency_key_ttl_seconds


async def test_without_redis_a_keyed_request_is_a_503_and_orders_nothing_and_one_without_a_key_is_served(
    settings: GatewaySettings, fakes: Fakes
) -> None:
    unreachable = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    customer_id = new_customer()

    async with client_of(create_app(unreachable)) as gateway:
        keyed = await place(gateway, customer_id, new_key())
        unkeyed = await place(gateway, customer_id, None)

    assert_problem(keyed, 503, "IDEMPOTENCY_UNAVAILABLE")
    assert unkeyed.status_code == 201, unkeyed.text
    assert [request.HasField("client_request_id") for request in fakes.orders.create_requests] == [False]


async def test_redis_failing_after_the_order_still_answers_the_order_and_the_claim_expires(
    settings: GatewaySettings, fakes: Fakes, infra: Infrastructure, redis: Redis
) -> None:
    """The answer cannot be stored: the client still gets its 201, and the claim, left behind,
    expires by itself (a retry then reaches orders, which answers by the client_request_id)."""
    server = urlsplit(infra.redis_url)
    outage = Outage(server.hostname or "127.0.0.1", server.port or 6379)
    await outage.end()
    through_outage = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{outage.port}/0"})
    customer_id, key = new_customer(), new_key()
    app = create_app(through_outage)

    async with client_of(app) as gateway:
        fakes.orders.behaviour.held = asyncio.Event()
        first = asyncio.create_task(place(gateway, customer_id, key))
        await asyncio.wait_for(fakes.orders.behaviour.called.wait(), timeout=10)
        await outage.close()
        await app.state.upstreams.redis.connection_pool.disconnect()
        fakes.orders.behaviour.held.set()
        response = await first

    assert response.status_code == 201, response.text
    claim_ttl_ms = await redis.pttl(record_key(customer_id, key))
    assert 0 < claim_ttl_ms <= (DEADLINE_SECONDS + IN_FLIGHT_MARGIN_SECONDS) * 1000


async def test_without_a_key_every_request_orders_and_carries_no_client_request_id(
    gateway: httpx.AsyncClient, fakes: Fakes
) -> None:
    customer_id = new_customer()
    first = await place(gateway, customer_id, None)
    second = await place(gateway, customer_id, None)

    assert first.json()["order_id"] != second.json()["order_id"]
    assert [request.HasField("client_request_id") for request in fakes.orders.create_requests] == [False, False]


def test_the_openapi_document_describes_the_key_and_what_it_adds(settings: GatewaySettings) -> None:
    operation = create_app(settings).openapi()["paths"]["/v1/orders"]["post"]

    [parameter] = [p for p in operation["parameters"] if p["name"] == KEY_HEADER]
    responses = operation["responses"]
    assert parameter["in"] == "header"
    assert not parameter["required"]
    assert parameter["schema"]["pattern"]
    assert {"Location", REPLAYED_HEADER} <= set(responses["201"]["headers"])
    assert REPLAYED_HEADER in responses["422"]["headers"]
    assert "Retry-After" in responses["409"]["headers"]
    assert "application/problem+json" in responses["503"]["content"]
