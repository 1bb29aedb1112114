"""gRPC keepalive (orderflow_kit.grpc_keepalive), between a real server run by `serve()` and a
channel made by `channel()`, through a proxy that watches the connection: an idle connection is
pinged and kept, a server's GOAWAY at the connection's max age costs no call, and a connection
that went silent is noticed and replaced without waiting for a call's deadline."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from orderflow_devstack.infra import free_port
from orderflow_kit.grpc_client import channel
from orderflow_kit.grpc_keepalive import Keepalive
from orderflow_kit.grpc_server import serve
from tests.support.grpc_servers import serving
from tests.support.polling import eventually
from tests.support.watched_proxy import WatchedProxy, watched_proxy

FAST = Keepalive(
    time_seconds=0.2, timeout_seconds=0.5, max_connection_age_seconds=3600, max_connection_age_grace_seconds=1
)
# An HTTP/2 PING frame: a 9-byte header and 8 bytes of payload (its ack is the same size).
PING_BYTES = 17


@asynccontextmanager
async def watched_channel(keepalive: Keepalive) -> AsyncIterator[tuple[WatchedProxy, grpc.aio.Channel]]:
    """A server run as the services run theirs (health service only, on a free port), a channel to
    it, both with `keepalive`, and the proxy between them that watches their connection."""
    port = free_port()

    async def run(stop: asyncio.Event) -> None:
        await serve(host="127.0.0.1", port=port, services=[], stop=stop, grace_seconds=1, keepalive=keepalive)

    async with (
        serving(run, f"127.0.0.1:{port}"),
        watched_proxy("127.0.0.1", port) as proxy,
        channel(proxy.address, keepalive=keepalive) as connection,
    ):
        yield proxy, connection


async def check(connection: grpc.aio.Channel) -> None:
    response = await health_pb2_grpc.HealthStub(connection).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_an_idle_connection_is_pinged_and_kept() -> None:
    async with watched_channel(FAST) as (proxy, connection):
        await check(connection)
        sent = proxy.bytes_from_client
        # No call: only pings cross, many more than grpc's default of two without data.
        await eventually(
            lambda: proxy.bytes_from_client,
            lambda sent_now: sent_now >= sent + 6 * PING_BYTES,
            what="keepalive pings on the idle connection",
        )
        await check(connection)
        assert proxy.connections == 1, "the server closed the pinged connection (too_many_pings?)"


async def test_a_goaway_at_the_max_connection_age_costs_no_call() -> None:
    aging = Keepalive(
        time_seconds=20, timeout_seconds=10, max_connection_age_seconds=0.3, max_connection_age_grace_seconds=0.3
    )
    async with watched_channel(aging) as (proxy, connection):

        async def connections_after_a_call() -> int:
            await check(connection)  # every call succeeds, across the GOAWAYs
            return proxy.connections

        await eventually(connections_after_a_call, lambda made: made >= 3, what="connections aged out and replaced")


async def test_a_silent_connection_is_noticed_and_replaced() -> None:
    async with watched_channel(FAST) as (proxy, connection):
        await check(connection)
        proxy.freeze()  # open, and carrying nothing: a peer gone without a word
        await eventually(lambda: proxy.connections, lambda made: made == 2, what="the silent connection replaced")
        await check(connection)
