"""The error mapping table and the problem+json bodies, without any server."""

import json
from http import HTTPStatus

import grpc
import pytest
from fastapi.exceptions import RequestValidationError
from grpc_status import rpc_status
from starlette.exceptions import HTTPException

from gateway.app import create_app
from gateway.grpc_problems import problem_from_grpc
from gateway.problem_handlers import problem_from_http_exception, problem_from_validation
from gateway.problem_openapi import with_problem_media_type
from gateway.problems import PROBLEM_MEDIA_TYPE, Problem, problem_response
from gateway.settings import GatewaySettings
from orderflow_kit.errors import failed_precondition
from orderflow_kit.grpc_client import ErrorDetail, error_detail
from orderflow_kit.grpc_server import to_rpc_status
from orderflow_kit.request_context import request_id_var
from tests.support.tokens import JWT_SECRET

# The table as the API promises it (docs/errors.md), written out independently of grpc_problems.py.
EXPECTED_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNKNOWN: 502,
    grpc.StatusCode.INTERNAL: 502,
    grpc.StatusCode.UNIMPLEMENTED: 502,
    grpc.StatusCode.DATA_LOSS: 502,
    grpc.StatusCode.CANCELLED: 502,
}
NO_INFO = ErrorDetail(None)


def body_of(problem: Problem, instance: str = "/v1/orders") -> dict[str, object]:
    response = problem_response(problem, instance)
    assert response.media_type == PROBLEM_MEDIA_TYPE
    body = json.loads(bytes(response.body))
    assert isinstance(body, dict)
    return body


def test_the_table_covers_every_grpc_status_but_ok() -> None:
    assert set(EXPECTED_HTTP_STATUS) == set(grpc.StatusCode) - {grpc.StatusCode.OK}


@pytest.mark.parametrize(("status", "http_status"), EXPECTED_HTTP_STATUS.items(), ids=lambda value: str(value))
def test_each_grpc_status_maps_to_its_http_status(status: grpc.StatusCode, http_status: int) -> None:
    assert problem_from_grpc(status, "message", NO_INFO).status == http_status
    assert problem_from_grpc(status, "message", ErrorDetail("SOME_CODE")).status == http_status


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION_FAILED"),
        (grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
        (grpc.StatusCode.FAILED_PRECONDITION, "CONFLICT"),
        (grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED"),
        (grpc.StatusCode.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "DEPENDENCY_TIMEOUT"),
        (grpc.StatusCode.INTERNAL, "DEPENDENCY_FAILED"),
    ],
)
def test_an_error_without_error_info_gets_the_status_default_code(status: grpc.StatusCode, code: str) -> None:
    assert problem_from_grpc(status, "message", NO_INFO).code == code


def test_the_error_info_reason_is_the_code_and_the_message_the_detail() -> None:
    problem = problem_from_grpc(grpc.StatusCode.NOT_FOUND, "order 42 does not exist", ErrorDetail("ORDER_NOT_FOUND"))

    assert (problem.status, problem.code, problem.detail) == (404, "ORDER_NOT_FOUND", "order 42 does not exist")


def test_out_of_stock_lists_the_short_skus_from_the_error_metadata() -> None:
    detail = ErrorDetail("OUT_OF_STOCK", {"skus": "SKU-1,SKU-2"})

    body = body_of(problem_from_grpc(grpc.StatusCode.FAILED_PRECONDITION, "not enough stock", detail))

    assert body["status"] == 409
    assert body["code"] == "OUT_OF_STOCK"
    assert body["skus"] == ["SKU-1", "SKU-2"]


def test_orders_client_request_id_reused_is_the_gateways_422_about_the_idempotency_key() -> None:
    message = "client_request_id idempotency-key:ab12 already placed order 42 with other items"
    detail = ErrorDetail("CLIENT_REQUEST_ID_REUSED", {"order_id": "42"})

    problem = problem_from_grpc(grpc.StatusCode.FAILED_PRECONDITION, message, detail)

    assert (problem.status, problem.code) == (422, "IDEMPOTENCY_KEY_REUSED")
    assert "Idempotency-Key" in problem.detail
    assert "client_request_id" not in problem.detail


def test_the_message_of_an_error_that_is_not_ours_never_reaches_the_client() -> None:
    message = "failed to connect to all addresses; last error: 10.0.0.7:50052 refused"

    problem = problem_from_grpc(grpc.StatusCode.UNAVAILABLE, message, NO_INFO)

    assert "10.0.0.7" not in problem.detail
    assert problem.detail


def test_the_code_and_metadata_survive_the_trip_through_a_real_grpc_status() -> None:
    status = rpc_status.to_status(to_rpc_status(failed_precondition("OUT_OF_STOCK", "short", skus="SKU-9")))
    error = grpc.aio.AioRpcError(
        status.code, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), status.details, None
    )

    problem = problem_from_grpc(error.code(), error.details() or "", error_detail(error))

    assert (problem.status, problem.code, problem.detail, problem.skus) == (409, "OUT_OF_STOCK", "short", ["SKU-9"])


def test_a_problem_body_has_every_rfc_9457_member_the_code_and_the_request_id() -> None:
    token = request_id_var.set("req-1")
    try:
        body = body_of(Problem(404, "ORDER_NOT_FOUND", "order 42 does not exist"), "/v1/orders/42")
    finally:
        request_id_var.reset(token)

    assert body == {
        "type": "https://orderflow.dev/problems/order-not-found",
        "title": "Order not found",
        "status": 404,
        "detail": "order 42 does not exist",
        "code": "ORDER_NOT_FOUND",
        "instance": "/v1/orders/42",
        "request_id": "req-1",
    }


def test_an_undocumented_code_is_titled_with_its_http_status_phrase() -> None:
    assert body_of(Problem(409, "SOMETHING_NEW", "detail"))["title"] == "Conflict"


def test_validation_mistakes_are_a_422_listing_each_field() -> None:
    error = RequestValidationError(
        [{"type": "greater_than_equal", "loc": ("body", "items", 0, "quantity"), "msg": "Input should be >= 1"}]
    )

    body = body_of(problem_from_validation(error))

    assert (body["status"], body["code"]) == (422, "VALIDATION_FAILED")
    assert body["errors"] == [
        {"location": ["body", "items", 0, "quantity"], "message": "Input should be >= 1", "type": "greater_than_equal"}
    ]


def test_unparsable_json_is_a_400_not_a_validation_failure() -> None:
    error = RequestValidationError(
        [{"type": "json_invalid", "loc": ("body", 7), "msg": "JSON decode error", "ctx": {"error": "Expecting value"}}]
    )

    problem = problem_from_validation(error)

    assert (problem.status, problem.code) == (400, "MALFORMED_JSON")
    assert "Expecting value" in problem.detail


@pytest.mark.parametrize(
    ("status", "code"), [(404, "NOT_FOUND"), (405, "METHOD_NOT_ALLOWED"), (413, "REQUEST_ENTITY_TOO_LARGE")]
)
def test_starlette_http_errors_keep_their_status_and_get_a_code(status: int, code: str) -> None:
    problem = problem_from_http_exception(HTTPException(status, headers={"Allow": "GET"}), "DELETE")

    assert (problem.status, problem.code) == (status, code)
    assert problem.headers == {"Allow": "GET"}


def test_openapi_documents_problems_as_problem_json() -> None:
    schema = {"$ref": "#/components/schemas/ProblemDetails"}
    openapi = {
        "paths": {
            "/v1/orders": {
                "post": {
                    "responses": {
                        "201": {"content": {"application/json": {"schema": {}}}},
                        "409": {"content": {"application/json": {"schema": schema}}},
                    }
                }
            }
        }
    }

    responses = with_problem_media_type(openapi)["paths"]["/v1/orders"]["post"]["responses"]

    assert responses["201"]["content"] == {"application/json": {"schema": {}}}
    assert responses["409"]["content"] == {PROBLEM_MEDIA_TYPE: {"schema": schema}}


def test_the_status_phrase_is_the_detail_when_a_service_sent_no_message() -> None:
    problem = problem_from_grpc(grpc.StatusCode.NOT_FOUND, "", ErrorDetail("ORDER_NOT_FOUND"))

    assert problem.detail == HTTPStatus.NOT_FOUND.phrase


def test_openapi_lists_each_statuss_codes_with_an_example_of_each() -> None:
    document = create_app(GatewaySettings(jwt_secret=JWT_SECRET)).openapi()
    conflict = document["paths"]["/v1/orders"]["post"]["responses"]["409"]
    examples = conflict["content"][PROBLEM_MEDIA_TYPE]["examples"]
    assert {"OUT_OF_STOCK", "IDEMPOTENCY_KEY_IN_FLIGHT"} <= set(examples)
    assert "`OUT_OF_STOCK`" in conflict["description"]
    out_of_stock = examples["OUT_OF_STOCK"]["value"]
    assert (out_of_stock["status"], out_of_stock["code"], out_of_stock["instance"]) == (
        409,
        "OUT_OF_STOCK",
        "/v1/orders",
    )
    assert conflict["content"][PROBLEM_MEDIA_TYPE]["schema"] == {"$ref": "#/components/schemas/ProblemDetails"}
