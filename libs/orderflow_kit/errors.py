"""Errors a service's domain code raises for a caller's mistake or a missing dependency.

They are plain Python, free of any transport: the gRPC layer turns them into a status with an
ErrorInfo (`reason` = the stable code), and the gateway turns that into problem+json. The stable
codes are part of the public API: clients branch on them, so never rename one."""

from enum import Enum


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


def not_found(code: str, detail: str, **metadata: str) -> ServiceError:
    return ServiceError(ErrorKind.NOT_FOUND, code, detail, metadata)


def already_exists(code: str, detail: str, **metadata: str) -> ServiceError:
    return ServiceError(ErrorKind.ALREADY_EXISTS, code, detail, metadata)


def failed_precondition(code: str, detail: str, **metadata: str) -> ServiceError:
    return ServiceError(ErrorKind.FAILED_PRECONDITION, code, detail, metadata)


def aborted(code: str, detail: str, **metadata: str) -> ServiceError:
    """A concurrent operation got in the way: the same call, repeated a little later, may succeed."""
    return ServiceError(ErrorKind.ABORTED, code, detail, metadata)


def unavailable(code: str, detail: str, **metadata: str) -> ServiceError:
    return ServiceError(ErrorKind.UNAVAILABLE, code, detail, metadata)


def deadline_exceeded(code: str, detail: str, **metadata: str) -> ServiceError:
    return ServiceError(ErrorKind.DEADLINE_EXCEEDED, code, detail, metadata)
