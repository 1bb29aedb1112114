"""Readiness probes shared by the `make up` runner, the tests and compose health checks:
`python -m orderflow_kit.probe grpc HOST:PORT` or `python -m orderflow_kit.probe http URL`."""

import sys

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc


def grpc_serving(target: str, timeout: float = 1.0) -> bool:
    """True when the standard gRPC health check answers SERVING for the whole server."""
    # Probes target this machine or a compose network: never through a proxy from the environment.
    with grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)]) as channel:
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
    probes = {"grpc": grpc_serving, "http": http_ok}
    if len(argv) != 2 or argv[0] not in probes:
        print("usage: python -m orderflow_kit.probe grpc HOST:PORT | http URL", file=sys.stderr)
        return 2
    return 0 if probes[argv[0]](argv[1]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
