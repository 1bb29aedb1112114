"""Every error the gateway answers is an RFC 9457 problem+json: this module says what one is (the
`Problem` to raise, the body it becomes) and holds the problems the gateway raises from more than
one place. Around it, one module per job:

- gateway.problem_codes: the catalogue of codes (titles, statuses, meanings), docs/errors.md's source;
- gateway.grpc_problems: THE table from a service's gRPC status to a problem;
- gateway.problem_handlers: the exception handlers that answer every error as a problem;
- gateway.allowed_methods: the Allow header of a 405;
- gateway.problem_openapi: the problems each operation documents in the OpenAPI document.

A problem's `code` is what clients branch on; `type` is the same code as a URI
(OUT_OF_STOCK -> https://orderflow.dev/problems/out-of-stock)."""

from collections.abc import Mapping
from http import HTTPStatus
from typing import Final

from fastapi.responses import Response
from pydantic import BaseModel, Field

from gateway.problem_codes import PROBLEM_TYPES
from orderflow_kit.request_context import request_id_var

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
PROBLEM_TYPE_BASE: Final = "https://orderflow.dev/problems/"


class FieldError(BaseModel):
    location: list[str | int] = Field(description="'body', 'query' or 'path', then the path to the field.")
    message: str
    type: str = Field(description="The kind of mistake: missing, int_type, greater_than_equal, extra_forbidden, ...")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details with orderflow's members; members that do not apply are left out."""

    type: str = Field(examples=["https://orderflow.dev/problems/out-of-stock"])
    title: str = Field(examples=["Out of stock"])
    status: int = Field(examples=[409])
    detail: str
    code: str = Field(description="Stable; clients branch on it.", examples=["OUT_OF_STOCK"])
    instance: str = Field(description="The request path.", examples=["/v1/orders"])
    request_id: str
    errors: list[FieldError] | None = Field(default=None, description="VALIDATION_FAILED (422): each mistake.")
    skus: list[str] | None = Field(
        default=None, description="OUT_OF_STOCK, UNKNOWN_SKU, PRODUCT_MISMATCH, STOCK_LIMIT: the SKUs concerned."
    )
    checks: dict[str, str] | None = Field(default=None, description="NOT_READY: each dependency's state.")


class Problem(Exception):
    """Raise to answer with a problem; the response adds type, title, instance and the request id."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        skus: list[str] | None = None,
        checks: dict[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors
        self.skus = skus
        self.checks = checks
        self.headers = headers


def problem_type(code: str) -> str:
    return PROBLEM_TYPE_BASE + code.lower().replace("_", "-")


def problem_details(problem: Problem, instance: str) -> ProblemDetails:
    """The body: a catalogued code has its title (gateway.problem_codes), any other its status phrase."""
    known = PROBLEM_TYPES.get(problem.code)
    return ProblemDetails(
        type=problem_type(problem.code),
        title=known.title if known is not None else HTTPStatus(problem.status).phrase,
        status=problem.status,
        detail=problem.detail,
        code=problem.code,
        instance=instance,
        request_id=request_id_var.get() or "",
        errors=problem.errors,
        skus=problem.skus,
        checks=problem.checks,
    )


def problem_response(problem: Problem, instance: str) -> Response:
    return Response(
        problem_details(problem, instance).model_dump_json(exclude_none=True),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def idempotency_key_reused() -> Problem:
    """The idempotency-key draft's 422: one key, two different requests (gateway.idempotency)."""
    return Problem(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
        "This Idempotency-Key was used for another request (other items); a new order needs a new key.",
    )


# What IDEMPOTENCY_KEY_IN_FLIGHT asks a client to wait before it repeats the request, in seconds.
IN_FLIGHT_RETRY_AFTER_SECONDS: Final = 1


def idempotency_key_in_flight() -> Problem:
    """The key's first request may still be running, here or in orders: a retryable answer."""
    return Problem(
        HTTPStatus.CONFLICT,
        "IDEMPOTENCY_KEY_IN_FLIGHT",
        "A request with this Idempotency-Key is still being processed; repeat it in a moment for its answer.",
        headers={"Retry-After": str(IN_FLIGHT_RETRY_AFTER_SECONDS)},
    )


def internal_error() -> Problem:
    return Problem(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
        "An unexpected error occurred; it has been logged with this request id.",
    )
