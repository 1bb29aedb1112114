"""The gRPC echo server: `python -m orderflow_bench.protocols.grpc_echo` on 127.0.0.1 and
ORDERFLOW_BENCH_PORT, in a process of its own so that its CPU is measured apart from the client's.

It serves raw bytes through a generic handler with identity serializers instead of a generated
service: a proto with one `bytes` field would put a 3-byte tag and length in front of the same
kilobyte, and encoding it costs about a microsecond against the tens of microseconds a call costs,
so codegen would add a proto, stubs and their drift check for no difference one could measure.
Like the other echo servers, it does nothing else: no interceptors, logging or middleware of
orderflow's (`make bench` measures those).
"""

import os
from collections.abc import AsyncIterator

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2_grpc

from orderflow_bench.protocols import LOOPBACK

SERVICE = "orderflow.bench.v1.Echo"
UNARY_METHOD = f"/{SERVICE}/Unary"
BIDI_METHOD = f"/{SERVICE}/Bidi"


async def _echo_unary(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def _echo_bidi(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


async def serve(port: int) -> None:
    """Unary and bidi echo, plus the standard health service the readiness probe asks."""
    server = grpc.aio.server()
    echo = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(_echo_unary),
            "Bidi": grpc.stream_stream_rpc_method_handler(_echo_bidi),
        },
    )
    server.add_generic_rpc_handlers((echo,))
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)  # type: ignore[attr-defined]
    server.add_insecure_port(f"{LOOPBACK}:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    uvloop.run(serve(int(os.environ["ORDERFLOW_BENCH_PORT"])))
