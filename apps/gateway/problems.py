"""Every error the gateway answers is RFC 9457 problem+json, and this module is the one place that
decides which: THE table from gRPC status to HTTP status, the stable codes and their titles, and the
handlers that turn exceptions into problem responses. docs/errors.md documents all of it.

A problem's `code` is what clients branch on; `type` is the same code as a URI
(OUT_OF_STOCK -> https://orderflow.dev/problems/out-of-stock)."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, Final

import grpc
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import Match

from orderflow_kit.grpc_client import ErrorDetail, error_detail
from orderflow_kit.request_context import request_id_var

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
PROBLEM_TYPE_BASE: Final = "https://orderflow.dev/problems/"
# Replaced by each operation's path in the OpenAPI document (with_problem_media_type).
EXAMPLE_INSTANCE: Final = "/v1/orders"

# THE table: a dependency's gRPC status -> the HTTP status, and the code used when the error carries
# no ErrorInfo reason (one that does, as every ServiceError of ours does, keeps its own code).
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


@dataclass(frozen=True)
class ProblemType:
    title: str
    # Every HTTP status the code is answered with (VALIDATION_FAILED: the gateway's 422, a service's 400).
    statuses: tuple[int, ...]
    # A typical `detail`, for the OpenAPI document's examples.
    example_detail: str


# The documented codes (docs/errors.md, "Codes"; a test compares the two). Any other code a service
# sends is passed on, titled with its HTTP status phrase.
PROBLEM_TYPES: Final[Mapping[str, ProblemType]] = MappingProxyType(
    {
        "VALIDATION_FAILED": ProblemType(
            "Request validation failed", (422, 400), "The request does not match the API's schema; see errors."
        ),
        "MALFORMED_JSON": ProblemType(
            "Malformed JSON body", (400,), "The request body is not valid JSON: Expecting value."
        ),
        "UNSUPPORTED_MEDIA_TYPE": ProblemType(
            "Unsupported media type", (415,), "Send the request body as application/json."
        ),
        "BODY_TOO_LARGE": ProblemType("Request body too large", (413,), "The request body is larger than 65536 bytes."),
        "NOT_FOUND": ProblemType("Not found", (404,), "There is nothing at this path."),
        "METHOD_NOT_ALLOWED": ProblemType(
            "Method not allowed", (405,), "DELETE is not allowed here; the Allow header lists what is."
        ),
        "AUTHENTICATION_REQUIRED": ProblemType(
            "Authentication required", (401,), "This operation needs a bearer token: send Authorization: Bearer <JWT>."
        ),
        "INVALID_TOKEN": ProblemType("Invalid token", (401,), "The token has expired."),
        "INSUFFICIENT_SCOPE": ProblemType(
            "Insufficient scope", (403,), "This operation needs a token with scope orders."
        ),
        "CUSTOMER_FORBIDDEN": ProblemType(
            "Another customer's data", (403,), "The token acts for customer c-1, not for c-2."
        ),
        "ORDER_NOT_FOUND": ProblemType(
            "Order not found", (404,), "order 0b7e8f4c-3a64-4c55-9d0e-4b8a2f7c1d23 not found"
        ),
        "DEAD_LETTER_NOT_FOUND": ProblemType(
            "Dead letter not found", (404,), "There is no dead letter with sequence 8."
        ),
        "DEAD_LETTER_NOT_REPLAYABLE": ProblemType(
            "Dead letter not replayable",
            (409,),
            "dead letter 8 has no dlq-subject or dlq-stream header; it can only be shown or purged.",
        ),
        "UNKNOWN_SKU": ProblemType("Unknown SKU", (404,), "unknown SKU: MUG-999"),
        "OUT_OF_STOCK": ProblemType(
            "Out of stock", (409,), "not enough stock for LAMP-DESK (requested 50, available 12)"
        ),
        "PRODUCT_MISMATCH": ProblemType(
            "Product mismatch", (409,), "MUG-001 is in the catalog with another name or price"
        ),
        "STOCK_LIMIT": ProblemType("Stock limit reached", (409,), "MUG-001 would hold more than 2147483647 units"),
        "INVALID_PAGE_TOKEN": ProblemType(
            "Invalid page token", (400,), "page_token is not a page token: pass next_page_token back as given"
        ),
        "INVALID_LAST_EVENT_ID": ProblemType(
            "Invalid Last-Event-ID",
            (400,),
            "Last-Event-ID '12' is not an event id: expected <ORDERS sequence>.<DEAD_LETTERS sequence>, two "
            "unsigned integers of at most 19 digits without leading zeros.",
        ),
        "RATE_LIMITED": ProblemType("Too many requests", (429,), "Too many requests from this customer; retry in 1 s."),
        "INVENTORY_UNAVAILABLE": ProblemType(
            "Inventory unavailable", (503,), "inventory is unavailable; nothing was ordered"
        ),
        "INVENTORY_TIMEOUT": ProblemType(
            "Inventory timed out", (504,), "inventory did not answer in time; nothing was ordered"
        ),
        "ORDERS_STORE_UNAVAILABLE": ProblemType(
            "Order store unavailable", (503,), "the order could not be stored; nothing was ordered"
        ),
        "DATABASE_UNAVAILABLE": ProblemType("Database unavailable", (503,), "the loyalty database is unavailable"),
        "DEPENDENCY_UNAVAILABLE": ProblemType(
            "Dependency unavailable", (503,), "A service behind the gateway is unavailable; retry later."
        ),
        "DEPENDENCY_TIMEOUT": ProblemType(
            "Dependency timed out", (504,), "A service behind the gateway did not answer in time; retry later."
        ),
        "DEPENDENCY_FAILED": ProblemType("Dependency failed", (502,), "A service behind the gateway failed."),
        "NOT_READY": ProblemType("Not ready", (503,), "Not ready: inventory unavailable."),
        "INTERNAL_ERROR": ProblemType(
            "Internal error", (500,), "An unexpected error occurred; it has been logged with this request id."
        ),
        "IDEMPOTENCY_KEY_INVALID": ProblemType(
            "Invalid Idempotency-Key", (400,), "Send one Idempotency-Key of 1 to 255 printable ASCII characters."
        ),
        "IDEMPOTENCY_KEY_REUSED": ProblemType(
            "Idempotency-Key reused with another request",
            (422,),
            "This Idempotency-Key was used for another request (other items); a new order needs a new key.",
        ),
        "IDEMPOTENCY_KEY_IN_FLIGHT": ProblemType(
            "A request with this Idempotency-Key is in flight",
            (409,),
            "A request with this Idempotency-Key is still being processed; repeat it after Retry-After.",
        ),
        "IDEMPOTENCY_UNAVAILABLE": ProblemType(
            "Idempotency keys unavailable",
            (503,),
            "Idempotency keys cannot be checked right now; nothing was ordered. Retry later.",
        ),
    }
)

# Errors without an ErrorInfo did not come from our domain code: their message may name hosts or
# exceptions, so the client gets only what happened.
_GENERIC_DETAILS: Final[Mapping[HTTPStatus, str]] = MappingProxyType(
    {
        HTTPStatus.BAD_GATEWAY: "A service behind the gateway failed.",
        HTTPStatus.SERVICE_UNAVAILABLE: "A service behind the gateway is unavailable; retry later.",
        HTTPStatus.GATEWAY_TIMEOUT: "A service behind the gateway did not answer in time; retry later.",
    }
)


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


def internal_error() -> Problem:
    return Problem(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
        "An unexpected error occurred; it has been logged with this request id.",
    )


def problem_response(problem: Problem, instance: str) -> Response:
    body = ProblemDetails(
        type=problem_type(problem.code),
        title=PROBLEM_TYPES[problem.code].title if problem.code in PROBLEM_TYPES else HTTPStatus(problem.status).phrase,
        status=problem.status,
        detail=problem.detail,
        code=problem.code,
        instance=instance,
        request_id=request_id_var.get() or "",
        errors=problem.errors,
        skus=problem.skus,
        checks=problem.checks,
    )
    return Response(
        body.model_dump_json(exclude_none=True),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def problem_from_validation(error: RequestValidationError) -> Problem:
    """FastAPI reports unparsable JSON as a validation error; it is a 400, not a 422."""
    mistakes = error.errors()
    malformed = next((mistake for mistake in mistakes if mistake["type"] == "json_invalid"), None)
    if malformed is not None:
        reason = malformed.get("ctx", {}).get("error", "invalid JSON")
        return Problem(HTTPStatus.BAD_REQUEST, "MALFORMED_JSON", f"The request body is not valid JSON: {reason}.")
    return Problem(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
        "The request does not match the API's schema; see errors.",
        errors=[
            FieldError(location=list(mistake["loc"]), message=mistake["msg"], type=mistake["type"])
            for mistake in mistakes
        ],
    )


def problem_from_http_exception(error: HTTPException, method: str) -> Problem:
    """Starlette's own answers: an unknown route (404) or a method the route does not take (405)."""
    status = HTTPStatus(error.status_code)
    details = {
        HTTPStatus.NOT_FOUND: "There is nothing at this path.",
        HTTPStatus.METHOD_NOT_ALLOWED: f"{method} is not allowed here; the Allow header lists what is.",
    }
    return Problem(status, status.name, details.get(status, str(error.detail)), headers=error.headers)


# What a 405's Allow header may name.
_HTTP_METHODS: Final = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """The Allow header for a 405: every method some route serves at this path. Starlette's own
    names only the first route with the path, so it would say POST for /v1/orders, which GET serves too."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _HTTP_METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    )


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def on_problem(request: Request, problem: Problem) -> Response:
        return problem_response(problem, request.url.path)

    @app.exception_handler(grpc.aio.AioRpcError)
    async def on_grpc_error(request: Request, error: grpc.aio.AioRpcError) -> Response:
        return problem_response(problem_from_grpc_error(error), request.url.path)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, error: RequestValidationError) -> Response:
        return problem_response(problem_from_validation(error), request.url.path)

    @app.exception_handler(HTTPException)
    async def on_http_exception(request: Request, error: HTTPException) -> Response:
        problem = problem_from_http_exception(error, request.method)
        if problem.status == HTTPStatus.METHOD_NOT_ALLOWED:
            problem.headers = {"Allow": allowed_methods(request)}
        return problem_response(problem, request.url.path)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the problems a route can answer: for each status, the codes it
    comes with, and an example body of each."""
    return {status: _documented_problem(status) for status in statuses}


def _documented_problem(status: int) -> dict[str, Any]:
    codes = [code for code, kind in PROBLEM_TYPES.items() if status in kind.statuses]
    phrase = HTTPStatus(status).phrase
    examples = {
        code: {
            "summary": PROBLEM_TYPES[code].title,
            "value": {
                "type": problem_type(code),
                "title": PROBLEM_TYPES[code].title,
                "status": status,
                "detail": PROBLEM_TYPES[code].example_detail,
                "code": code,
                "instance": EXAMPLE_INSTANCE,
                "request_id": "8a66162e1e824fb5b31666be80649f59",
            },
        }
        for code in codes
    }
    described = f"{phrase}: `code` is one of " + ", ".join(f"`{code}`" for code in codes) if codes else phrase
    return {"model": ProblemDetails, "description": described, "content": {"application/json": {"examples": examples}}}


def with_problem_media_type(openapi: dict[str, Any]) -> dict[str, Any]:
    """FastAPI documents every response model as application/json; ours say what they are, and
    their examples name the operation's own path as the instance."""
    for path, operations in openapi.get("paths", {}).items():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if status[0] in "45" and "application/json" in content:
                    content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
                for example in content.get(PROBLEM_MEDIA_TYPE, {}).get("examples", {}).values():
                    example["value"] = {**example["value"], "instance": path}
    return openapi
