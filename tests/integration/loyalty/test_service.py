"""The service as it runs: LoyaltyService over real gRPC beside the consumer, and
`python -m loyalty` as a process that stops cleanly on SIGTERM."""

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import grpc
import pytest
from nats.js import JetStreamContext

from loyalty.awarding_points import get_balance
from loyalty.settings import LoyaltySettings
from orderflow_contracts.loyalty.v1 import loyalty_pb2, loyalty_pb2_grpc
from orderflow_devstack.infra import free_port
from orderflow_devstack.processes import ServiceProcess, ServiceSpec
from orderflow_kit.db import create_engine
from orderflow_kit.errors import ErrorKind, ServiceError
from orderflow_kit.grpc_client import channel, error_detail
from orderflow_kit.probe import grpc_serving
from tests.integration.loyalty.helpers import new_customer_id
from tests.support.events import order_created, publish
from tests.support.jetstream import acked_through, consumer_exists
from tests.support.polling import eventually
from tests.support.services import serving_loyalty

START_TIMEOUT = 30.0


@asynccontextmanager
async def serving(settings: LoyaltySettings) -> AsyncIterator[loyalty_pb2_grpc.LoyaltyServiceStub]:
    """The service's real wiring (loyalty.main.run) in this event loop, and a client of it."""
    async with serving_loyalty(settings) as address, channel(address) as connection:
        yield loyalty_pb2_grpc.LoyaltyServiceStub(connection)


async def test_get_balance_answers_the_points_the_consumer_awarded(
    settings: LoyaltySettings, js: JetStreamContext
) -> None:
    customer = new_customer_id()
    async with serving(settings) as loyalty:
        await eventually(lambda: consumer_exists(js, settings.order_events.consumer))
        ack = await publish(js, order_created(customer, total_cents=12_345))
        await eventually(lambda: acked_through(js, settings.order_events.consumer, ack.seq))

        balance = await loyalty.GetBalance(loyalty_pb2.GetBalanceRequest(customer_id=customer), timeout=5)

    assert (balance.customer_id, balance.points, balance.orders_awarded) == (customer, 123, 1)


async def test_get_balance_of_an_unknown_customer_is_zero(settings: LoyaltySettings) -> None:
    customer = new_customer_id()
    async with serving(settings) as loyalty:
        balance = await loyalty.GetBalance(loyalty_pb2.GetBalanceRequest(customer_id=customer), timeout=5)

    assert (balance.customer_id, balance.points, balance.orders_awarded) == (customer, 0, 0)


@pytest.mark.parametrize("customer_id", ["", "has spaces", "x" * 65, "émile"])
async def test_get_balance_of_an_invalid_customer_id_is_invalid_argument(
    settings: LoyaltySettings, customer_id: str
) -> None:
    async with serving(settings) as loyalty:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await loyalty.GetBalance(loyalty_pb2.GetBalanceRequest(customer_id=customer_id), timeout=5)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    detail = error_detail(raised.value)
    assert detail.code == "VALIDATION_FAILED"
    assert detail.metadata == {"field": "customer_id"}


async def test_get_balance_while_the_database_is_unreachable_is_unavailable(settings: LoyaltySettings) -> None:
    nobody_listens = create_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", settings.loyalty_database)
    try:
        with pytest.raises(ServiceError) as raised:
            await get_balance(nobody_listens, new_customer_id())
    finally:
        await nobody_listens.dispose()

    assert (raised.value.kind, raised.value.code) == (ErrorKind.UNAVAILABLE, "DATABASE_UNAVAILABLE")


async def test_python_m_loyalty_serves_consumes_and_exits_0_on_sigterm(
    settings: LoyaltySettings, js: JetStreamContext
) -> None:
    address = f"{settings.listen_host}:{settings.loyalty_port}"
    env = {
        "ORDERFLOW_NATS_URL": settings.nats_url,
        "ORDERFLOW_POSTGRES_URL": settings.postgres_url,
        "ORDERFLOW_LOYALTY_DATABASE": settings.loyalty_database,
        "ORDERFLOW_LOYALTY_CONSUMER": settings.order_events.consumer,
        "ORDERFLOW_LOYALTY_DELIVER_POLICY": "new",
        "ORDERFLOW_LISTEN_HOST": settings.listen_host,
        "ORDERFLOW_LOYALTY_PORT": str(settings.loyalty_port),
        "ORDERFLOW_LOG_FORMAT": "json",
    }
    event = order_created(new_customer_id())
    process = ServiceProcess(ServiceSpec("loyalty", "loyalty", env, partial(grpc_serving, address)), io.StringIO())
    process.start()
    try:
        await asyncio.to_thread(process.wait_ready, time.monotonic() + START_TIMEOUT)
        # SERVING means consuming: an event published now (deliver policy "new") is not missed.
        assert await consumer_exists(js, settings.order_events.consumer)
        ack = await publish(js, event)
        await eventually(lambda: acked_through(js, settings.order_events.consumer, ack.seq))
    finally:
        await asyncio.to_thread(process.stop)

    assert process.returncode == 0, process.tail()
    logged = [json.loads(line) for line in process.tail(100) if line.startswith("{")]
    assert {"serving", "consuming", "stopped"} <= {line["event"] for line in logged}, process.tail()
    [handled] = [line for line in logged if line["event"] == "event consumed"]
    assert (handled["outcome"], handled["ce_id"]) == ("awarded", event.id)
    assert handled["ce_subject"] == json.loads(event.data)["order_id"]
