"""The fault flags against the real services, PostgreSQL and JetStream: each one breaks what it
says, and the guarantees hold. The crash faults SIGKILL the orders process, so orders runs as a
child process there (`python -m orders`); the others run in-process."""

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_contracts.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from orderflow_contracts.orders.v1 import orders_pb2, orders_pb2_grpc
from orderflow_devstack.infra import Infrastructure
from orderflow_devstack.processes import ServiceProcess
from orderflow_kit.faults import FAULTS_ENV, FAULTS_FILE_ENV
from orderflow_kit.grpc_client import channel
from tests.integration.orders.helpers import (
    copies_seen,
    count_rows,
    next_stream_seq,
    pending_events,
    published_on_the_wire,
    stage,
    stream_messages,
)
from tests.support.databases import database_engine
from tests.support.jetstream import jetstream
from tests.support.polling import eventually
from tests.support.rpc_errors import rpc_error
from tests.support.services import orders_process

START_TIMEOUT = 30.0


def log_lines(process: ServiceProcess, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of `process` whose event is `event`."""
    lines = [json.loads(line) for line in process.tail(200) if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


async def died(process: ServiceProcess) -> int | None:
    """The exit code of `process`, once it has exited by itself."""
    await eventually(lambda: process.returncode is not None, what=f"{process.name} exiting")
    return process.returncode


async def serving(process: ServiceProcess) -> str:
    process.start()
    await asyncio.to_thread(process.wait_ready, time.monotonic() + START_TIMEOUT)
    return f"127.0.0.1:{process.spec.env['ORDERFLOW_ORDERS_PORT']}"


async def test_a_relay_crash_after_the_ack_leaves_the_event_pending_and_a_restart_marks_it_as_the_broker_drops_it(
    infra: Infrastructure, orders_database: str, orders_engine: AsyncEngine, inventory_address: str, tmp_path: Path
) -> None:
    [event] = await stage(orders_engine, 1)
    crashing = orders_process(
        infra,
        orders_database,
        inventory_address,
        tmp_path / "crashing.log",
        env={FAULTS_ENV: "relay_crash_after_publish"},
    )
    async with jetstream(infra.nats_url) as js:
        first_seq = await next_stream_seq(js)
        crashing.start()  # its relay publishes the pending event at once, then SIGKILLs the process
        try:
            assert await died(crashing) == -signal.SIGKILL, crashing.tail()
        finally:
            await asyncio.to_thread(crashing.stop)
        assert await pending_events(orders_engine, [event.id]) == 1  # never marked...
        assert len(await stream_messages(js, first_seq, {event.id})) == 1  # ...yet the broker has it
        [fired] = log_lines(crashing, "fault injected")
        assert (fired["fault"], fired["event_id"]) == ("relay_crash_after_publish", event.id)

        restarted = orders_process(infra, orders_database, inventory_address, tmp_path / "restarted.log")
        try:
            await serving(restarted)
            await eventually(lambda: pending_events(orders_engine, [event.id]), lambda pending: pending == 0)
        finally:
            await asyncio.to_thread(restarted.stop)
        stored = await stream_messages(js, first_seq, {event.id})

    assert len(stored) == 1, "the broker kept a second copy"
    [published] = log_lines(restarted, "event published")
    assert (published["event_id"], published["duplicate"]) == (event.id, True)


async def test_orders_dying_between_reserve_and_commit_leaves_the_stock_reserved_and_no_order(
    infra: Infrastructure,
    orders_database: str,
    orders_engine: AsyncEngine,
    inventory_database: str,
    inventory_address: str,
    tmp_path: Path,
) -> None:
    process = orders_process(
        infra,
        orders_database,
        inventory_address,
        tmp_path / "orders.log",
        env={FAULTS_ENV: "orders_crash_before_commit"},
    )
    try:
        address = await serving(process)
        async with grpc.aio.insecure_channel(address) as connection:  # no retries: the call must fail
            refused = await rpc_error(
                orders_pb2_grpc.OrderServiceStub(connection).CreateOrder(
                    orders_pb2.CreateOrderRequest(
                        customer_id="cust-crash", items=[orders_pb2.OrderItem(sku="TEST-MUG", quantity=2)]
                    ),
                    timeout=10,
                )
            )
        assert await died(process) == -signal.SIGKILL, process.tail()
    finally:
        await asyncio.to_thread(process.stop)

    assert refused.code == grpc.StatusCode.UNAVAILABLE
    [fired] = log_lines(process, "fault injected")
    order_id = fired["order_id"]
    assert fired["fault"] == "orders_crash_before_commit"
    assert await count_rows(orders_engine, order_id) == {"orders": 0, "order_lines": 0, "outbox": 0}
    async with database_engine(infra.postgres_url, inventory_database) as inventory, inventory.connect() as connection:
        reservation = await connection.execute(
            text(
                "SELECT r.status, l.sku, l.quantity FROM reservations r JOIN reservation_lines l USING (order_id) "
                "WHERE r.order_id = CAST(:id AS uuid)"
            ),
            {"id": order_id},
        )
        assert [tuple(row) for row in reservation] == [("RESERVED", "TEST-MUG", 2)]


@pytest.mark.parametrize(
    ("flag", "copies_stored"),
    [("publish_twice", 2), ("publish_twice=same_msg_id", 1)],
    ids=["new msg id: both stored", "same msg id: the broker drops the copy"],
)
async def test_publish_twice_sends_every_event_twice(
    infra: Infrastructure,
    orders_engine: AsyncEngine,
    orders_address: str,
    monkeypatch: pytest.MonkeyPatch,
    flag: str,
    copies_stored: int,
) -> None:
    """Counted on the wire, where the broker's dedupe cannot hide the second publish, and in the stream."""
    monkeypatch.setenv(FAULTS_ENV, flag)

    async with published_on_the_wire(infra.nats_url) as on_the_wire, jetstream(infra.nats_url) as js:
        first_seq = await next_stream_seq(js)
        [event] = await stage(orders_engine, 1)
        await eventually(lambda: pending_events(orders_engine, [event.id]), lambda pending: pending == 0)
        await eventually(lambda: copies_seen(on_the_wire, {event.id}), lambda seen: len(seen) == 2)
        stored = await stream_messages(js, first_seq, {event.id})

    assert len(stored) == copies_stored
    msg_ids = {headers["Nats-Msg-Id"] for headers in copies_seen(on_the_wire, {event.id})}
    assert msg_ids == ({event.id, f"twice.{event.id}"} if copies_stored == 2 else {event.id})


async def available(inventory_address: str, sku: str) -> int:
    async with channel(inventory_address) as connection:
        product = await inventory_pb2_grpc.InventoryServiceStub(connection).GetProduct(
            inventory_pb2.GetProductRequest(sku=sku), timeout=5
        )
    return int(product.available)


async def test_a_slow_inventory_exceeds_a_short_deadline_until_the_fault_file_heals_it(
    order_service: Any, inventory_address: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Broken and healed through the file while the services run, without a restart."""
    switch = tmp_path / "faults"
    switch.write_text("inventory_delay_ms=1500\n")
    monkeypatch.setenv(FAULTS_FILE_ENV, str(switch))
    before = await available(inventory_address, "TEST-LAMP")
    order = orders_pb2.CreateOrderRequest(
        customer_id="cust-slow", items=[orders_pb2.OrderItem(sku="TEST-LAMP", quantity=1)]
    )

    refused = await rpc_error(order_service.CreateOrder(order, timeout=0.5))

    assert refused.code == grpc.StatusCode.DEADLINE_EXCEEDED
    # Inventory did reserve, late: orders gave up and released it.
    await eventually(lambda: available(inventory_address, "TEST-LAMP"), lambda stock: stock == before)

    switch.unlink()
    started = time.monotonic()
    created = await order_service.CreateOrder(order, timeout=5)

    assert created.order_id
    assert time.monotonic() - started < 1.0
