"""A request body larger than the gateway's limit (ORDERFLOW_MAX_REQUEST_BODY_BYTES) is refused
with 413 BODY_TOO_LARGE before any route sees it, so nothing is written and nothing is called.

A declared Content-Length over the limit is refused before a byte of the body is read. A body
without one (chunked) is counted as it arrives and refused as soon as it passes the limit: the
gateway never holds more than the limit of a request in memory, whatever the client claims.

A route whose valid bodies can be larger (a restock of MAX_RESTOCK_REQUEST_LINES lines, gateway.restock)
names its own limit in `path_limits`; the larger of the two applies to it. A route that reads
its body as a stream of pieces and holds each piece to the limit itself (the bulk order import,
gateway.order_import) is named in `streamed_paths` and passed through.

Pure ASGI, placed inside RequestContextMiddleware, so the 413 carries the request id and gets its
access line like every other answer."""

from collections.abc import Collection, Mapping
from http import HTTPStatus

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.problems import Problem, problem_response


class _BodyTooLarge(Exception):
    """Raised into whatever reads the body once it passes the limit."""


class BodySizeLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        path_limits: Mapping[str, int] | None = None,
        streamed_paths: Collection[str] = (),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = {path: max(limit, max_bytes) for path, limit in (path_limits or {}).items()}
        self.streamed_paths = frozenset(streamed_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.streamed_paths:
            await self.app(scope, receive, send)
            return
        max_bytes = self.path_limits.get(scope["path"], self.max_bytes)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            await self._refuse(scope, receive, send, max_bytes)
            return

        received = 0
        exceeded = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    exceeded = True
            if exceeded:
                raise _BodyTooLarge
            return message

        async def send_unless_exceeded(message: Message) -> None:
            """FastAPI answers a failed body read with a 400 of its own; the 413 replaces it."""
            nonlocal response_started
            if exceeded and not response_started:
                return
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, send_unless_exceeded)
        except _BodyTooLarge:
            if response_started:
                raise
        if exceeded and not response_started:
            await self._refuse(scope, receive, send, max_bytes)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
        problem = Problem(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            "BODY_TOO_LARGE",
            f"The request body is larger than {max_bytes} bytes.",
            # The rest of the body is never read: the connection cannot carry another request.
            headers={"Connection": "close"},
        )
        await problem_response(problem, scope["path"])(scope, receive, send)
