"""THE table from a service's gRPC status to the problem the gateway answers (docs/errors.md,
"gRPC status → HTTP status", is rendered from it by `make docs`).

A refusal of ours carries a google.rpc.ErrorInfo whose reason is the stable code: the problem
keeps that code and the service's message. An error without one did not come from our domain
code (a refused connection, an exceeded deadline, a crash): it gets the status's default code and
a generic detail, because its message may name hosts or exceptions."""

from collections.abc import Callable, Mapping
from http import HTTPStatus
from types import MappingProxyType
from typing import Final

import grpc
import structlog

from gateway.problems import Problem, idempotency_key_in_flight, idempotency_key_reused
from orderflow_kit.grpc_client import ErrorDetail, error_detail

# A dependency's gRPC status -> the HTTP status, and the code used when the error carries no
# ErrorInfo reason (one that does, as every ServiceError of ours does, keeps its own code).
GRPC_TO_HTTP: Final[Mapping[grpc.StatusCode, tuple[HTTPStatus, str]]] = MappingProxyType(
    {
        grpc.StatusCode.INVALID_ARGUMENT: (HTTPStatus.BAD_REQUEST, "VALIDATION_FAILED"),
        grpc.StatusCode.OUT_OF_RANGE: (HTTPStatus.BAD_REQUEST, "VALIDATION_FAILED"),
        grpc.StatusCode.NOT_FOUND: (HTTPStatus.NOT_FOUND, "NOT_FOUND"),
        grpc.StatusCode.FAILED_PRECONDITION: (HTTPStatus.CONFLICT, "CONFLICT"),
        grpc.StatusCode.ALREADY_EXISTS: (HTTPStatus.CONFLICT, "ALREADY_EXISTS"),
        grpc.StatusCode.ABORTED: (HTTPStatus.CONFLICT, "CONFLICT"),
        grpc.StatusCode.UNAUTHENTICATED: (HTTPStatus.UNAUTHORIZED, "UNAUTHENTICATED"),
        grpc.StatusCode.PERMISSION_DENIED: (HTTPStatus.FORBIDDEN, "PERMISSION_DENIED"),
        grpc.StatusCode.RESOURCE_EXHAUSTED: (HTTPStatus.TOO_MANY_REQUESTS, "RATE_LIMITED"),
        grpc.StatusCode.UNAVAILABLE: (HTTPStatus.SERVICE_UNAVAILABLE, "DEPENDENCY_UNAVAILABLE"),
        grpc.StatusCode.DEADLINE_EXCEEDED: (HTTPStatus.GATEWAY_TIMEOUT, "DEPENDENCY_TIMEOUT"),
    }
)
# Every other status (UNKNOWN, INTERNAL, UNIMPLEMENTED, DATA_LOSS, CANCELLED) means a dependency broke.
DEPENDENCY_FAILED: Final = (HTTPStatus.BAD_GATEWAY, "DEPENDENCY_FAILED")

# Errors without an ErrorInfo did not come from our domain code: their message may name hosts or
# exceptions, so the client gets only what happened.
_GENERIC_DETAILS: Final[Mapping[HTTPStatus, str]] = MappingProxyType(
    {
        HTTPStatus.BAD_GATEWAY: "A service behind the gateway failed.",
        HTTPStatus.SERVICE_UNAVAILABLE: "A service behind the gateway is unavailable; retry later.",
        HTTPStatus.GATEWAY_TIMEOUT: "A service behind the gateway did not answer in time; retry later.",
    }
)

# A service's code the gateway answers as one of its own. orders' CLIENT_REQUEST_ID_REUSED and
# CLIENT_REQUEST_IN_FLIGHT come only from a client_request_id derived from an Idempotency-Key,
# which the client knows, not the id.
_GATEWAY_PROBLEMS: Final[Mapping[str, Callable[[], Problem]]] = MappingProxyType(
    {"CLIENT_REQUEST_ID_REUSED": idempotency_key_reused, "CLIENT_REQUEST_IN_FLIGHT": idempotency_key_in_flight}
)


def problem_from_grpc(status: grpc.StatusCode, message: str, detail: ErrorDetail) -> Problem:
    http_status, fallback_code = GRPC_TO_HTTP.get(status, DEPENDENCY_FAILED)
    if detail.code is None:
        return Problem(http_status, fallback_code, _GENERIC_DETAILS.get(http_status, http_status.phrase))
    if detail.code in _GATEWAY_PROBLEMS:
        return _GATEWAY_PROBLEMS[detail.code]()
    skus = [sku for sku in detail.metadata.get("skus", "").split(",") if sku]
    return Problem(http_status, detail.code, message or http_status.phrase, skus=skus or None)


def problem_from_grpc_error(error: grpc.aio.AioRpcError) -> Problem:
    """The access line carries what the client is not told: the status and message as received."""
    structlog.contextvars.bind_contextvars(grpc_status=error.code().name, grpc_detail=error.details())
    return problem_from_grpc(error.code(), error.details() or "", error_detail(error))
