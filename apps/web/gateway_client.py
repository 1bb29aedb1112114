"""The gateway's public API over HTTP: the web app's only way to the pipeline. Every answer
that is not a success becomes an ApiProblem carrying the problem+json the gateway sent (or one
made here when the gateway cannot be reached), so pages show the API's own errors."""

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
REQUEST_ID_HEADER: Final = "X-Request-Id"


@dataclass
class ApiProblem(Exception):
    """An RFC 9457 problem from the gateway (or about reaching it)."""

    status: int
    code: str
    title: str
    detail: str
    request_id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    retry_after: str | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.detail}"

    @classmethod
    def from_response(cls, response: httpx.Response, body: bytes | None = None) -> "ApiProblem":
        request_id = response.headers.get(REQUEST_ID_HEADER)
        retry_after = response.headers.get("Retry-After")
        try:
            problem = httpx.Response(200, content=body if body is not None else response.content).json()
        except ValueError:
            problem = None
        if not isinstance(problem, dict):
            phrase = response.reason_phrase or "Error"
            return cls(response.status_code, "UNEXPECTED_ANSWER", phrase, phrase, request_id, [], retry_after)
        errors = problem.get("errors")
        return cls(
            status=int(problem.get("status") or response.status_code),
            code=str(problem.get("code") or "UNKNOWN"),
            title=str(problem.get("title") or response.reason_phrase),
            detail=str(problem.get("detail") or ""),
            request_id=str(problem.get("request_id") or request_id or "") or None,
            errors=errors if isinstance(errors, list) else [],
            retry_after=retry_after,
        )

    @classmethod
    def unreachable(cls, error: httpx.HTTPError) -> "ApiProblem":
        if isinstance(error, httpx.TimeoutException):
            return cls(504, "GATEWAY_TIMEOUT", "The API did not answer in time", "The gateway did not answer in time.")
        return cls(503, "GATEWAY_UNAVAILABLE", "The API is unavailable", f"The gateway cannot be reached ({error}).")


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None


class Gateway:
    """One connection pool to the gateway, opened and closed with the app."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout, trust_env=False)

    async def close(self) -> None:
        await self._client.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The answer's JSON body; ApiProblem for anything but a 2xx."""
        try:
            response = await self._client.request(
                method, path, json=json, params=params, headers=_headers(token, headers)
            )
        except httpx.HTTPError as error:
            raise ApiProblem.unreachable(error) from error
        if response.is_error:
            raise ApiProblem.from_response(response)
        return response.json() if response.content else None

    async def json_lines(
        self, path: str, *, token: str | None, content: bytes, content_type: str, max_lines: int
    ) -> list[Any]:
        """POST `content` and read the answer's JSON lines (NDJSON), at most `max_lines` of them;
        ApiProblem for anything but a 2xx."""
        headers = _headers(token, {"Content-Type": content_type})
        timeout = httpx.Timeout(self._client.timeout.connect, read=None)
        answers: list[Any] = []
        try:
            async with self._client.stream("POST", path, content=content, headers=headers, timeout=timeout) as response:
                if response.is_error:
                    raise ApiProblem.from_response(response, await response.aread())
                async for line in response.aiter_lines():
                    if line.strip():
                        answers.append(httpx.Response(200, content=line.encode()).json())
                    if len(answers) >= max_lines:
                        break
        except httpx.HTTPError as error:
            raise ApiProblem.unreachable(error) from error
        return answers

    async def events(self, path: str, *, token: str | None) -> AsyncIterator[ServerSentEvent]:
        """A Server-Sent Events feed, event by event, until the gateway ends it (or the caller
        stops iterating: the connection is closed then). A refusal is an ApiProblem before the first event."""
        timeout = httpx.Timeout(self._client.timeout.connect, read=None)
        try:
            async with self._client.stream("GET", path, headers=_headers(token, None), timeout=timeout) as response:
                if response.is_error:
                    raise ApiProblem.from_response(response, await response.aread())
                async for event in parse_events(response.aiter_lines()):
                    yield event
        except httpx.HTTPError as error:
            raise ApiProblem.unreachable(error) from error


def _headers(token: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    headers = dict(extra or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def parse_events(lines: AsyncIterator[str]) -> AsyncIterator[ServerSentEvent]:
    """The event stream format (HTML, Server-sent events): fields until a blank line; comments
    (heartbeats) and `retry:` are skipped."""
    event, last_id = "message", None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield ServerSentEvent(event, "\n".join(data), last_id)
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            last_id = value
