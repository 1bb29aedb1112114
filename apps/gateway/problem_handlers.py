"""The exception handlers that make every error the gateway answers a problem+json
(gateway.problems): a Problem raised by a route, a service's gRPC error (gateway.grpc_problems),
FastAPI's validation errors, and Starlette's own 404 and 405."""

from http import HTTPStatus

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from gateway.allowed_methods import allowed_methods
from gateway.grpc_problems import problem_from_grpc_error
from gateway.problems import FieldError, Problem, problem_response


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
