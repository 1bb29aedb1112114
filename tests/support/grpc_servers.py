"""gRPC servers in the test's own event loop, so a test can start, stop and inspect them: a
service's real wiring (`run(settings, stop)`), or a fake servicer on a free port."""

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.support.polling import eventually

SERVING = int(health_pb2.HealthCheckResponse.SERVING)


async def health_status(address: str, service: str = "", credentials: grpc.ChannelCredentials | None = None) -> int:
    """What the standard health check at `address` answers for `service` ("": the whole server),
    asked over TLS with `credentials`; UNKNOWN when nothing answers."""
    async with _channel(address, credentials) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1.0
            )
        except grpc.aio.AioRpcError:
            return int(health_pb2.HealthCheckResponse.UNKNOWN)
    return int(response.status)


def _channel(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
    if credentials is None:
        return grpc.aio.insecure_channel(address)
    return grpc.aio.secure_channel(address, credentials)


@asynccontextmanager
async def serving(
    run: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
    address: str,
    *,
    within: float = 30.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> AsyncIterator[str]:
    """Run `run(stop)` as a task until the block ends; yields `address` once its health check
    (over TLS with `credentials`) answers SERVING, and sets `stop` and awaits the task at the end."""
    stop = asyncio.Event()
    server = asyncio.create_task(run(stop))

    async def status() -> int:
        if server.done():
            server.result()  # a failed start raises its own error here
            raise AssertionError("the server stopped before it served")
        return await health_status(address, credentials=credentials)

    try:
        await eventually(status, lambda answer: answer == SERVING, within=within, what=f"SERVING at {address}")
        yield address
    finally:
        stop.set()
        await server


@dataclass(frozen=True)
class RunningServer:
    server: grpc.aio.Server
    address: str


@asynccontextmanager
async def serving_servicer(
    servicer: object, add_to_server: Callable[[Any, grpc.aio.Server], None], *, healthy: str | None = None
) -> AsyncIterator[RunningServer]:
    """A gRPC server on a free port with `servicer`; with `healthy`, also a standard health check
    answering SERVING for the server and for that service name."""
    server = grpc.aio.server()
    add_to_server(servicer, server)
    if healthy is not None:
        health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        await health_servicer.set(healthy, health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield RunningServer(server, f"127.0.0.1:{port}")
    finally:
        await server.stop(None)
