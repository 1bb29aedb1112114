"""The service as it runs: health and reflection, and `python -m inventory` as a process."""

import io
import json
import time
from functools import partial
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from inventory.servicer import SERVICE_NAME
from inventory.settings import DEMO_CATALOG, InventorySettings
from orderflow_devstack.infra import Infrastructure, free_port, poll_until
from orderflow_devstack.processes import ServiceProcess, ServiceSpec
from orderflow_kit.probe import grpc_serving
from tests.support.grpc_servers import health_status

START_TIMEOUT = 30.0


async def test_health_answers_serving_for_the_server_and_the_service(inventory_address: str) -> None:
    assert await health_status(inventory_address) == health_pb2.HealthCheckResponse.SERVING
    assert await health_status(inventory_address, SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_inventory_service(inventory_address: str) -> None:
    async with grpc.aio.insecure_channel(inventory_address) as connection:
        reflection = reflection_pb2_grpc.ServerReflectionStub(connection)
        call = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        responses = [response async for response in call]

    services = {service.name for service in responses[0].list_services_response.service}
    assert SERVICE_NAME in services


def inventory_process(infra: Infrastructure, database: str, consumer: str, **env: str) -> ServiceProcess:
    """`python -m inventory` on a free port, with an OrderCreated consumer named `consumer`; its
    output is kept for the assertions."""
    address = f"127.0.0.1:{free_port()}"
    settings = {
        "ORDERFLOW_NATS_URL": infra.nats_url,
        "ORDERFLOW_INVENTORY_CONSUMER": consumer,
        "ORDERFLOW_INVENTORY_DELIVER_POLICY": "new",
        "ORDERFLOW_POSTGRES_URL": infra.postgres_url,
        "ORDERFLOW_INVENTORY_DATABASE": database,
        "ORDERFLOW_CATALOG": str(DEMO_CATALOG),
        "ORDERFLOW_LISTEN_HOST": "127.0.0.1",
        "ORDERFLOW_INVENTORY_PORT": address.rsplit(":", 1)[1],
        "ORDERFLOW_LOG_FORMAT": "json",
        **env,
    }
    spec = ServiceSpec("inventory", "inventory", settings, partial(grpc_serving, address))
    return ServiceProcess(spec, io.StringIO())


def logged_events(process: ServiceProcess) -> list[dict[str, object]]:
    return [json.loads(line) for line in process.tail(100) if line.startswith("{")]


def test_python_m_inventory_serves_and_exits_0_on_sigterm(
    infra: Infrastructure, database: str, settings: InventorySettings
) -> None:
    process = inventory_process(infra, database, settings.order_events.consumer)
    process.start()
    try:
        process.wait_ready(time.monotonic() + START_TIMEOUT)
    finally:
        process.stop()

    assert process.returncode == 0, process.tail()
    assert {"serving", "stopped"} <= {event["event"] for event in logged_events(process)}


def test_python_m_inventory_exits_1_naming_an_invalid_catalog(
    infra: Infrastructure, empty_database: str, settings: InventorySettings, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("[{]")
    process = inventory_process(infra, empty_database, settings.order_events.consumer, ORDERFLOW_CATALOG=str(broken))
    process.start()
    try:
        exited = poll_until(lambda: process.returncode is not None, time.monotonic() + START_TIMEOUT)
    finally:
        process.stop()

    assert exited
    assert process.returncode == 1, process.tail()
    [error] = [event for event in logged_events(process) if event["event"] == "cannot start"]
    assert f"catalog file {broken} is invalid" in str(error["error"])
