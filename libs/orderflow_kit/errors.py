"""Errors a service's domain code raises for a caller's mistake or a missing dependency.

They are plain Python, free of any transport: the gRPC layer turns them into a status with an
ErrorInfo (`reason` = the stable code), and the gateway turns that into problem+json. The stable
codes are part of the public API: clients branch on them, so never rename one."""

from enum import Enum
from typing import Protocol


class ErrorKind(Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"


class ServiceError(Exception):
    def __init__(self, kind: ErrorKind, code: str, detail: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.code = code
        self.detail = detail
        self.metadata = metadata or {}


def invalid_argument(detail: str, code: str = "VALIDATION_FAILED", **metadata: str) -> ServiceError:
    return ServiceError(ErrorKind.INVALID_ARGUMENT, code, detail, metadata)


class ErrorFactory(Protocol):
    """`not_found` and its like: the stable code, the detail, and metadata for the ErrorInfo."""

    def __call__(self, code: str, detail: str, **metadata: str) -> ServiceError: ...


def _of_kind(kind: ErrorKind) -> ErrorFactory:
    """The factory of one kind's errors: the kinds differ in nothing else."""

    def error(code: str, detail: str, **metadata: str) -> ServiceError:
        return ServiceError(kind, code, detail, metadata)

    return error


not_found = _of_kind(ErrorKind.NOT_FOUND)
already_exists = _of_kind(ErrorKind.ALREADY_EXISTS)
failed_precondition = _of_kind(ErrorKind.FAILED_PRECONDITION)
# A concurrent operation got in the way: the same call, repeated a little later, may succeed.
aborted = _of_kind(ErrorKind.ABORTED)
unavailable = _of_kind(ErrorKind.UNAVAILABLE)
deadline_exceeded = _of_kind(ErrorKind.DEADLINE_EXCEEDED)
