"""`python -m gateway` as a process: it serves, writes one access line per request, and on
SIGTERM lets in-flight requests finish, ends open event streams and exits 0; with no way to
verify tokens it does not start."""

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest

from gateway.settings import GatewaySettings
from orderflow_contracts.streams import DEAD_LETTER_STREAM, ORDERS_STREAM
from orderflow_devstack.infra import Infrastructure, free_port
from tests.integration.gateway.fakes import INTERNAL_MESSAGE, Fakes
from tests.support.jetstream import consumers_described_by, ensure_orderflow_streams
from tests.support.sse import event_stream
from tests.support.tokens import GATEWAY_ENV, as_admin, as_customer

START_TIMEOUT = 20.0


@dataclass
class GatewayProcess:
    process: asyncio.subprocess.Process
    url: str

    async def stop(self) -> tuple[int, list[dict[str, Any]]]:
        """SIGTERM, then the exit code and the JSON log lines."""
        self.process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(self.process.communicate(), timeout=20)
        lines = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
        assert self.process.returncode is not None
        return self.process.returncode, lines


def gateway_env(fakes: Fakes, infra: Infrastructure, port: int) -> dict[str, str]:
    """The process's environment, without whatever ORDERFLOW_JWT_* the tests run with."""
    return {
        **{name: value for name, value in os.environ.items() if not name.startswith("ORDERFLOW_JWT_")},
        "ORDERFLOW_GATEWAY_PORT": str(port),
        "ORDERFLOW_ORDERS_ADDR": fakes.orders_server.address,
        "ORDERFLOW_INVENTORY_ADDR": fakes.inventory_server.address,
        "ORDERFLOW_LOYALTY_ADDR": fakes.loyalty_server.address,
        "ORDERFLOW_REDIS_URL": infra.redis_url,
        "ORDERFLOW_LOG_FORMAT": "json",
    }


@pytest.fixture
async def gateway_process(fakes: Fakes, infra: Infrastructure) -> AsyncIterator[GatewayProcess]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        env={**gateway_env(fakes, infra, port), **GATEWAY_ENV},
        stderr=asyncio.subprocess.PIPE,
    )
    gateway = GatewayProcess(process, f"http://127.0.0.1:{port}")
    try:
        await wait_until_alive(gateway)
        yield gateway
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def wait_until_alive(gateway: GatewayProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        while True:
            assert gateway.process.returncode is None, "the gateway exited at start-up"
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.05)


async def test_the_gateway_process_serves_and_exits_0_on_sigterm(gateway_process: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway_process.url) as client:
        ready = await client.get("/readyz")

    exit_code, _ = await gateway_process.stop()

    assert ready.status_code == 200
    assert exit_code == 0


async def test_sigterm_lets_an_in_flight_request_finish(gateway_process: GatewayProcess, fakes: Fakes) -> None:
    fakes.inventory.behaviour.held = asyncio.Event()
    async with httpx.AsyncClient(base_url=gateway_process.url) as client:
        in_flight = asyncio.create_task(client.get("/v1/products"))
        await asyncio.wait_for(fakes.inventory.behaviour.called.wait(), timeout=10)
        gateway_process.process.send_signal(signal.SIGTERM)
        fakes.inventory.behaviour.held.set()
        response = await in_flight

    exit_code, _ = await gateway_process.stop()

    assert response.status_code == 200
    assert exit_code == 0


async def test_sigterm_ends_open_event_feeds_deletes_their_consumers_and_exits_0(
    gateway_process: GatewayProcess, infra: Infrastructure
) -> None:
    """An event stream never ends by itself: the gateway closes it at shutdown rather than wait out its grace."""
    await ensure_orderflow_streams(infra.nats_url)
    request_id = f"sigterm-feed-{uuid.uuid4().hex}"
    headers = {**as_admin(), "X-Request-Id": request_id}
    async with (
        httpx.AsyncClient(base_url=gateway_process.url, timeout=10) as client,
        event_stream(client, "/v1/events", headers) as stream,
    ):
        await stream.next_message()
        opened = await consumers_described_by(infra.nats_url, request_id)
        started = time.monotonic()
        exit_code, _ = await gateway_process.stop()
        stopped_in = time.monotonic() - started
        # Cut, not ended with a last chunk (sse-starlette cancels streams at shutdown): either way,
        # an EventSource client reconnects with its Last-Event-ID.
        with pytest.raises((StopAsyncIteration, httpx.RemoteProtocolError)):
            await stream.next_message()

    assert exit_code == 0
    assert opened == {ORDERS_STREAM: 1, DEAD_LETTER_STREAM: 1}
    assert stopped_in < GatewaySettings().shutdown_grace_seconds / 2
    assert await consumers_described_by(infra.nats_url, request_id) == {ORDERS_STREAM: 0, DEAD_LETTER_STREAM: 0}


async def test_each_request_writes_one_access_line(gateway_process: GatewayProcess, fakes: Fakes) -> None:
    order = {"customer_id": "customer-log", "items": [{"sku": "SKU-1", "quantity": 1}]}
    fakes.loyalty.behaviour.failure = grpc.StatusCode.INTERNAL
    async with httpx.AsyncClient(base_url=gateway_process.url) as client:
        created = await client.post(
            "/v1/orders", json=order, headers={"X-Request-Id": "req-create", **as_customer("customer-log")}
        )
        missing = await client.get("/v1/nothing-here", headers={"X-Request-Id": "req-missing"})
        failed = await client.get(
            "/v1/customers/c-1/loyalty", headers={"X-Request-Id": "req-failed", **as_customer("c-1")}
        )

    _, lines = await gateway_process.stop()

    access = {line["request_id"]: line for line in lines if line["event"] == "request"}
    assert created.status_code == 201
    assert missing.status_code == 404
    assert access["req-create"]["method"] == "POST"
    assert access["req-create"]["path"] == "/v1/orders"
    assert access["req-create"]["status"] == 201
    assert access["req-create"]["order_id"] == created.json()["order_id"]
    assert access["req-create"]["sub"] == "customer-log"
    assert isinstance(access["req-create"]["ms"], float)
    assert access["req-missing"]["status"] == 404
    assert "order_id" not in access["req-missing"]
    assert failed.status_code == 502
    assert INTERNAL_MESSAGE not in failed.text
    assert access["req-failed"]["level"] == "warning"
    assert access["req-failed"]["grpc_status"] == "INTERNAL"
    assert access["req-failed"]["grpc_detail"] == INTERNAL_MESSAGE
    assert [line["request_id"] for line in lines if line["event"] == "request"].count("req-create") == 1


async def test_without_a_way_to_verify_tokens_the_gateway_says_so_and_exits_2(
    fakes: Fakes, infra: Infrastructure
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", env=gateway_env(fakes, infra, free_port()), stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=START_TIMEOUT)

    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    assert process.returncode == 2
    refusal = next(line for line in lines if line["event"] == "cannot start")
    assert "ORDERFLOW_JWT_SECRET" in refusal["reason"]
    assert "ORDERFLOW_JWT_JWKS_URL" in refusal["reason"]
    assert not any(line["event"] == "started" for line in lines)
