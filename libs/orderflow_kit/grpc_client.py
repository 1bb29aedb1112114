"""How orderflow services call each other: channels that retry only UNAVAILABLE (the calls they
are used for are idempotent), the request context in the metadata, and typed error details."""

import json
from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

_RETRY_UNAVAILABLE = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


def channel(target: str) -> grpc.aio.Channel:
    """Create inside the running event loop (grpc.aio channels belong to one loop)."""
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", _RETRY_UNAVAILABLE),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", 30_000),
            # A peer that was down is dialled again within seconds, not grpc's default 2 minutes.
            ("grpc.max_reconnect_backoff_ms", 5_000),
        ],
    )


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
