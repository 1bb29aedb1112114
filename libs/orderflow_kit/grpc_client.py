"""How orderflow services call each other: channels that retry only what may be retried (the
policy is in orderflow_kit.failures), over TLS when configured (orderflow_kit.grpc_tls), the
request context in the metadata, and typed error details."""

import json
from collections.abc import Collection
from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from orderflow_kit.failures import IDEMPOTENT_METHODS, RETRYABLE_STATUS_CODES
from orderflow_kit.grpc_keepalive import DEFAULT_KEEPALIVE, Keepalive


@dataclass(frozen=True)
class RetryPolicy:
    """Which methods (`package.Service/Method`) a channel retries on RETRYABLE_STATUS_CODES, and
    how often. Every attempt and every backoff happen within the call's own deadline."""

    methods: Collection[str]
    max_attempts: int = 3
    initial_backoff_seconds: float = 0.05
    max_backoff_seconds: float = 0.5

    def service_config(self) -> str:
        """The `grpc.service_config` channel option: calls spread over every address the target
        names (replicas), and a retry policy for the listed methods only."""
        balancing: dict[str, object] = {"loadBalancingConfig": [{"round_robin": {}}]}
        if not self.methods:
            return json.dumps(balancing)
        names = [
            {"service": service, "method": method}
            for service, method in (name.split("/", 1) for name in sorted(self.methods))
        ]
        retry = {
            "maxAttempts": self.max_attempts,
            "initialBackoff": f"{self.initial_backoff_seconds}s",
            "maxBackoff": f"{self.max_backoff_seconds}s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": list(RETRYABLE_STATUS_CODES),
        }
        return json.dumps({**balancing, "methodConfig": [{"name": names, "retryPolicy": retry}]})


# The default: every idempotent method of orderflow's contracts, nothing else (not CreateOrder).
RETRY_IDEMPOTENT_CALLS = RetryPolicy(IDEMPOTENT_METHODS)


def channel(
    target: str,
    *,
    retry: RetryPolicy = RETRY_IDEMPOTENT_CALLS,
    credentials: grpc.ChannelCredentials | None = None,
    keepalive: Keepalive = DEFAULT_KEEPALIVE,
) -> grpc.aio.Channel:
    """Create inside the running event loop (grpc.aio channels belong to one loop). With
    `credentials` (orderflow_kit.grpc_tls.channel_credentials) the channel speaks TLS only."""
    options: list[tuple[str, str | int]] = [
        ("grpc.service_config", retry.service_config()),
        ("grpc.enable_retries", 1),
        *keepalive.client_options(),
        # A peer that was down (restarted by its supervisor) is dialled again within a second or
        # two, not after grpc's default backoff of up to 2 minutes.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, credentials, options=options)


def blocking_channel(target: str, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    """A synchronous channel for one-off calls outside an event loop (probes, the `make up` banner).
    It targets this machine or a compose network: never through a proxy from the environment."""
    options = [("grpc.enable_http_proxy", 0)]
    if credentials is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, credentials, options=options)


@dataclass(frozen=True)
class ErrorDetail:
    """A failed call's stable code (ErrorInfo.reason) and metadata, when the server sent them."""

    code: str | None
    metadata: dict[str, str] = field(default_factory=dict)


def error_detail(error: grpc.aio.AioRpcError) -> ErrorDetail:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return ErrorDetail(info.reason, dict(info.metadata))
    return ErrorDetail(None)
