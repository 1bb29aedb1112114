"""The problems in the OpenAPI document: each operation lists, for each problem status it can
answer, the codes that come with it (gateway.problem_codes) and an example body of each, under
the media type the gateway really answers with (application/problem+json)."""

from http import HTTPStatus
from typing import Any, Final

from gateway.problem_codes import PROBLEM_TYPES
from gateway.problems import PROBLEM_MEDIA_TYPE, ProblemDetails, problem_type

# Replaced by each operation's path in the document (with_problem_media_type).
EXAMPLE_INSTANCE: Final = "/v1/orders"


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
