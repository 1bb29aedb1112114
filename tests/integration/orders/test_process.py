"""`python -m orders` as a process: it migrates, serves, publishes through its relay, and exits 0
on SIGTERM."""

import asyncio
import json
import time
from pathlib import Path

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_contracts.orders.v1 import orders_pb2, orders_pb2_grpc
from orderflow_devstack.infra import Infrastructure
from orderflow_kit.grpc_client import channel
from orders.main import SERVICE_NAME
from tests.integration.orders.helpers import event_ids_of, pending_events
from tests.support.polling import eventually
from tests.support.services import orders_process

START_TIMEOUT = 30.0


async def test_python_m_orders_serves_publishes_and_exits_0_on_sigterm(
    infra: Infrastructure, orders_database: str, orders_engine: AsyncEngine, inventory_address: str, tmp_path: Path
) -> None:
    process = orders_process(infra, orders_database, inventory_address, tmp_path / "orders.log")
    process.start()
    try:
        await asyncio.to_thread(process.wait_ready, time.monotonic() + START_TIMEOUT)
        address = f"127.0.0.1:{process.spec.env['ORDERFLOW_ORDERS_PORT']}"
        async with channel(address) as connection:
            order = await orders_pb2_grpc.OrderServiceStub(connection).CreateOrder(
                orders_pb2.CreateOrderRequest(
                    customer_id="cust-process", items=[orders_pb2.OrderItem(sku="TEST-MUG", quantity=1)]
                ),
                timeout=10,
            )
            services = await _reflected_services(connection)
        event_ids = await event_ids_of(orders_engine, [order.order_id])
        await eventually(lambda: pending_events(orders_engine, event_ids), lambda pending: pending == 0)
    finally:
        await asyncio.to_thread(process.stop)

    assert process.returncode == 0, process.tail()
    assert SERVICE_NAME in services
    lines = [json.loads(line) for line in process.tail(200) if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert "serving" in events
    assert "stopped" in events
    [published] = [line for line in lines if line["event"] == "event published"]
    assert (published["order_id"], published["event_id"]) == (order.order_id, event_ids[0])


async def _reflected_services(connection: grpc.aio.Channel) -> set[str]:
    reflection = reflection_pb2_grpc.ServerReflectionStub(connection)
    call = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    responses = [response async for response in call]
    return {service.name for service in responses[0].list_services_response.service}
