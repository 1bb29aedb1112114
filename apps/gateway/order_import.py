"""Bulk order import for admins: `POST /v1/admin/orders:import`, NDJSON in, NDJSON out, streamed
both ways over one call of orders' PlaceOrders (bidirectional streaming; docs/patterns/streaming.md).

Each line of the body is one order: {"customer_id", "items": [{"sku", "quantity"}], "client_request_id"}.
Each line gets one answer line, in order, as soon as it is known, while later lines are still
arriving: {"line": N, "client_request_id": ..., "order": {...}} or {"line": N, "client_request_id":
..., "problem": {problem+json}}. A line that is not JSON, breaks the schema or is too long is
answered here with its problem (400 MALFORMED_JSON, 422 VALIDATION_FAILED, 413 BODY_TOO_LARGE), and
never sent to orders; a refusal from orders (404 UNKNOWN_SKU, 409 OUT_OF_STOCK...) is that line's
problem. Blank lines are skipped (line numbers still count them).

Nothing is buffered beyond a window: a line is read from the body only once orders took the one
before (PlaceOrders reads a window ahead of its answers, then HTTP/2 flow control pushes back), so a
fast client is slowed down, and the gateway holds a few lines per import, however long. The body
is exempt from the request size limit (gateway.body_limit); each line is held to it instead.

Running an import again places nothing twice: the client_request_id of each line is orders' (the
same id as CreateOrder's, per customer). A client that goes away cancels the call: lines not yet
read are never placed; placements already started finish. The response is 200 once streaming; if
orders fails mid-import, the lines read but not answered get a 503/504 problem and the stream ends
(run the import again: what was placed is answered, not placed again)."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Final

import grpc
import pydantic
import structlog
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import Field
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway import mapping
from gateway.auth import AdminPrincipal, authenticated_router
from gateway.grpc_problems import DEPENDENCY_FAILED, GRPC_TO_HTTP, problem_from_grpc_error
from gateway.problem_handlers import problem_from_validation
from gateway.problem_openapi import problem_responses
from gateway.problems import Problem, problem_details
from gateway.routes import PREFIX
from gateway.schemas import CreateOrderIn, CustomerId
from gateway.settings import GatewaySettings
from gateway.upstreams import UpstreamsDep
from orderflow_contracts.identifiers import CLIENT_REQUEST_ID_PATTERN
from orderflow_contracts.orders.v1 import orders_pb2
from orderflow_kit import untrusted_json
from orderflow_kit.request_context import outgoing_metadata

log = structlog.get_logger()

NDJSON: Final = "application/x-ndjson"
ACCEPTED_MEDIA_TYPES: Final = frozenset({NDJSON, "application/ndjson", "application/jsonl", "application/x-jsonl"})
PATH: Final = f"{PREFIX}/admin/orders:import"
# Answers the gateway holds for lines it has read and not yet written out.
ANSWERS_AHEAD: Final = 64
# What PlaceOrders' read() gives at the end of its stream (grpc-stubs does not declare it).
_END_OF_CALL: Final[Any] = grpc.aio.EOF  # type: ignore[attr-defined]

router = authenticated_router(f"{PREFIX}/admin")


class ImportLineIn(CreateOrderIn):
    """One line of an import: an order for any customer, with its client_request_id."""

    customer_id: CustomerId  # required here
    client_request_id: str = Field(
        pattern=CLIENT_REQUEST_ID_PATTERN,
        description="Unique per customer; an import run again answers the order this id placed instead of "
        "placing another. 1 to 128 printable ASCII characters without spaces.",
        examples=["import-2026-12-03-line-1"],
    )


@dataclass(frozen=True)
class _Answered:
    """An answer the gateway gives itself: the line never reaches orders."""

    body: dict[str, Any]


@dataclass(frozen=True)
class _Sent:
    """A line sent to orders: its answer is PlaceOrders' next response."""

    line: int
    client_request_id: str


class _LineTooLong:
    pass


_TOO_LONG: Final = _LineTooLong()
_DONE: Final = object()

_EXAMPLE_IN = (
    '{"customer_id":"customer-42","items":[{"sku":"MUG-001","quantity":2}],"client_request_id":"batch-7-line-1"}\n'
    '{"customer_id":"customer-43","items":[{"sku":"NO-SUCH","quantity":1}],"client_request_id":"batch-7-line-2"}\n'
)
_EXAMPLE_OUT = (
    '{"line":1,"client_request_id":"batch-7-line-1","order":{"order_id":"0b7e8f4c-3a64-4c55-9d0e-4b8a2f7c1d23",'
    '"customer_id":"customer-42","status":"CREATED","items":[{"sku":"MUG-001","quantity":2,"unit_price_cents":1250}],'
    '"total_cents":2500,"currency":"EUR","created_at":"2026-12-03T10:15:00.123456Z"}}\n'
    '{"line":2,"client_request_id":"batch-7-line-2","problem":{"type":"https://orderflow.dev/problems/unknown-sku",'
    '"title":"Unknown SKU","status":404,"detail":"unknown SKU(s): NO-SUCH","code":"UNKNOWN_SKU",'
    '"instance":"/v1/admin/orders:import","request_id":"9b2f0c1d5e6a","skus":["NO-SUCH"]}}\n'
)


def _line_schema() -> dict[str, Any]:
    """ImportLineIn's JSON schema, its items referring to OrderItemIn among the document's schemas
    (CreateOrderIn puts it there)."""
    schema = ImportLineIn.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return schema


async def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


@router.post(
    "/orders:import",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "One NDJSON line per order line of the body, in order, streamed as each is answered: "
            "`order` (the order placed, or placed before under this client_request_id) or `problem` (why not).",
            "content": {NDJSON: {"schema": {"type": "string"}, "example": _EXAMPLE_OUT}},
        },
        **problem_responses(415),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "NDJSON: one JSON object per line, each an order (the schema of one line).",
            "content": {NDJSON: {"schema": _line_schema(), "example": _EXAMPLE_IN}},
        }
    },
)
async def import_orders(
    request: Request,
    principal: AdminPrincipal,
    upstreams: UpstreamsDep,
    settings: Annotated[GatewaySettings, Depends(_settings)],
) -> StreamingResponse:
    """Place many orders from NDJSON lines (scope admin), answering each line as it is placed; a bad
    line is answered with its problem and the import goes on. Safe to run again: client_request_ids."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in ACCEPTED_MEDIA_TYPES:
        raise Problem(415, "UNSUPPORTED_MEDIA_TYPE", f"Send the orders as {NDJSON}, one JSON object per line.")
    # No deadline: the call lasts as long as the import. Each placement inside has its own.
    call = upstreams.orders.PlaceOrders(metadata=outgoing_metadata())
    return _ImportResponse(_answer_lines(request, call, settings.max_request_body_bytes), media_type=NDJSON)


async def _answer_lines(request: Request, call: Any, max_line_bytes: int) -> AsyncIterator[bytes]:
    """Read lines and send them to orders (a task), while writing each line's answer in order."""
    pending: asyncio.Queue[_Answered | _Sent | BaseException | object] = asyncio.Queue(ANSWERS_AHEAD)
    instance = request.url.path

    async def send_lines() -> None:
        try:
            number = 0
            async for raw in _lines(request.stream(), max_line_bytes):
                number += 1
                answer = _read_line(number, raw, instance, max_line_bytes)
                if isinstance(answer, ImportLineIn):
                    await pending.put(_Sent(number, answer.client_request_id))
                    await call.write(_place_request(answer))  # waits while orders' window is full
                elif answer is not None:
                    await pending.put(answer)
            await call.done_writing()
            await pending.put(_DONE)
        except Exception as error:  # the client went away, or orders did (its answer will say)
            await pending.put(error)
            return
        # The body is read: what is left to learn from the client is whether it goes away.
        while (await request.receive())["type"] != "http.disconnect":
            pass
        call.cancel()

    sending = asyncio.create_task(send_lines())
    try:
        while (entry := await pending.get()) is not _DONE:
            if isinstance(entry, ClientDisconnect):
                log.info("import ended: the client went away")
                return
            if isinstance(entry, BaseException):
                if isinstance(entry, grpc.aio.AioRpcError | grpc.aio.UsageError):
                    return  # the call failed: the lines sent were answered with its error already
                raise entry
            if isinstance(entry, _Answered):
                yield _json_line(entry.body)
                continue
            assert isinstance(entry, _Sent)
            try:
                response = await call.read()
            except grpc.aio.AioRpcError as error:
                yield _json_line(_call_failed(entry, error, instance))
                async for line in _drain_answers(pending, error, instance):
                    yield line
                return
            if response is _END_OF_CALL:
                return
            yield _json_line(_answer(entry, response, instance))
    finally:
        sending.cancel()
        call.cancel()
        await asyncio.gather(sending, return_exceptions=True)


async def _drain_answers(
    pending: asyncio.Queue[Any], error: grpc.aio.AioRpcError, instance: str
) -> AsyncIterator[bytes]:
    """After the call failed: every line already read gets an answer (its own, or the call's error)."""
    while not pending.empty():
        entry = pending.get_nowait()
        if isinstance(entry, _Answered):
            yield _json_line(entry.body)
        elif isinstance(entry, _Sent):
            yield _json_line(_call_failed(entry, error, instance))


async def _lines(chunks: AsyncIterator[bytes], max_bytes: int) -> AsyncIterator[bytes | _LineTooLong]:
    """The body's lines (without their newline), each at most `max_bytes`: a longer one is given
    once as _TOO_LONG, and the rest of it is skipped unread into memory."""
    buffer = bytearray()
    skipping = False
    async for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            piece = chunk[start:end]
            start = end + 1
            if skipping:
                skipping = False
            elif len(buffer) + len(piece) > max_bytes:
                yield _TOO_LONG
            else:
                buffer += piece
                yield bytes(buffer)
            buffer.clear()
        rest = chunk[start:]
        if skipping:
            continue
        if len(buffer) + len(rest) > max_bytes:
            yield _TOO_LONG
            skipping = True
            buffer.clear()
        else:
            buffer += rest
    if buffer and not skipping:
        yield bytes(buffer)


def _read_line(
    number: int, raw: bytes | _LineTooLong, instance: str, max_bytes: int
) -> ImportLineIn | _Answered | None:
    if isinstance(raw, _LineTooLong):
        problem = Problem(413, "BODY_TOO_LARGE", f"Line {number} is longer than {max_bytes} bytes.")
        return _Answered(_problem_line(number, None, problem, instance))
    if not raw.strip():
        return None
    try:
        return ImportLineIn.model_validate_json(raw)
    except pydantic.ValidationError as error:
        problem = problem_from_validation(RequestValidationError(error.errors(include_url=False)))
        return _Answered(_problem_line(number, _client_request_id(raw), problem, instance))


def _client_request_id(raw: bytes) -> str | None:
    """The line's client_request_id, when it has a readable one: to name the line in its answer."""
    try:
        value = untrusted_json.loads(raw).get("client_request_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _place_request(line: ImportLineIn) -> orders_pb2.PlaceOrdersRequest:
    return orders_pb2.PlaceOrdersRequest(
        customer_id=line.customer_id,
        items=[orders_pb2.OrderItem(sku=item.sku, quantity=item.quantity) for item in line.items],
        client_request_id=line.client_request_id,
    )


def _answer(sent: _Sent, response: orders_pb2.PlaceOrdersResponse, instance: str) -> dict[str, Any]:
    if response.WhichOneof("result") == "order":
        order = mapping.order_out(response.order).model_dump(mode="json")
        return {"line": sent.line, "client_request_id": sent.client_request_id, "order": order}
    refusal = response.error
    status_code = getattr(grpc.StatusCode, refusal.code, grpc.StatusCode.UNKNOWN)
    http_status, _ = GRPC_TO_HTTP.get(status_code, DEPENDENCY_FAILED)
    skus = [sku for sku in refusal.metadata.get("skus", "").split(",") if sku] or None
    problem = Problem(http_status, refusal.reason or http_status.name, refusal.message or http_status.phrase, skus=skus)
    return _problem_line(sent.line, sent.client_request_id, problem, instance)


def _call_failed(sent: _Sent, error: grpc.aio.AioRpcError, instance: str) -> dict[str, Any]:
    """A line orders took but never answered: it may or may not have been placed (run it again)."""
    return _problem_line(sent.line, sent.client_request_id, problem_from_grpc_error(error), instance)


def _problem_line(line: int, client_request_id: str | None, problem: Problem, instance: str) -> dict[str, Any]:
    details = problem_details(problem, instance)
    return {"line": line, "client_request_id": client_request_id, "problem": details.model_dump(exclude_none=True)}


def _json_line(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


class _ImportResponse(StreamingResponse):
    """Streams while the request body is still being read. Starlette's StreamingResponse would also
    read the request's messages itself (to notice a disconnect), taking body chunks from the route;
    here the route reads them all, and notices the client going away."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.stream_response(send)
