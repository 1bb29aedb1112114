"""Readiness probes shared by the `make up` runner, the tests and compose health checks:
`python -m orderflow_kit.probe grpc HOST:PORT` or `python -m orderflow_kit.probe http URL`.
From the command line, the gRPC probe speaks TLS when the ORDERFLOW_GRPC_TLS_* settings say so."""

import sys
from collections.abc import Callable
from functools import partial

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from orderflow_kit.grpc_client import blocking_channel
from orderflow_kit.grpc_tls import channel_credentials
from orderflow_kit.settings import Settings


def grpc_serving(target: str, timeout: float = 1.0, credentials: grpc.ChannelCredentials | None = None) -> bool:
    """True when the standard gRPC health check answers SERVING for the whole server."""
    with blocking_channel(target, credentials) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def main(argv: list[str]) -> int:
    probes: dict[str, Callable[[str], bool]] = {
        "grpc": partial(grpc_serving, credentials=channel_credentials(Settings())),
        "http": http_ok,
    }
    if len(argv) != 2 or argv[0] not in probes:
        print("usage: python -m orderflow_kit.probe grpc HOST:PORT | http URL", file=sys.stderr)
        return 2
    return 0 if probes[argv[0]](argv[1]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
