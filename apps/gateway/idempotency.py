"""Idempotency keys on POST /v1/orders, with the semantics of the IETF httpapi draft
(draft-ietf-httpapi-idempotency-key-header): a client that sends `Idempotency-Key` may repeat the
request after a timeout, a dropped connection or a 5xx, and never orders twice.

Redis holds one record per customer (the token's `sub`) and key, claimed atomically before the
order is placed:
- no record: this request claims the key (in flight, with the fingerprint of the request as the
  gateway understood it) and runs. Its answer replaces the claim for ORDERFLOW_IDEMPOTENCY_KEY_TTL_SECONDS
  (24 h) when it is final (below 500: the order, or a refusal such as OUT_OF_STOCK); a 5xx
  (nothing ordered, or not known) or orders' "in flight" (an earlier request's placement may
  still record the order) deletes the claim, so that a retry runs;
- the same fingerprint, answered: that answer again, byte for byte, with `Idempotent-Replayed: true`;
- the same fingerprint, in flight: 409 IDEMPOTENCY_KEY_IN_FLIGHT with Retry-After;
- another fingerprint: 422 IDEMPOTENCY_KEY_REUSED.

The claim expires by itself after the gRPC deadline plus a margin, so a gateway that dies
mid-request blocks its key for seconds, not forever. Behind Redis, orders dedupes on a
client_request_id derived from the key (per customer too): a retry after a crash between the
order and the record, after the record expired, or after a 504 while the first placement still
runs, still answers the one order, or 409 in flight until it is placed, never a refusal that
order would contradict (orders.placing_orders). Without Redis a
keyed request orders nothing (503 IDEMPOTENCY_UNAVAILABLE: fail closed); one without a key is
served as ever."""

import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any, Final

import grpc
import structlog
from fastapi import Depends, Header, Request, Response
from prometheus_client import Counter
from pydantic import BaseModel
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.grpc_problems import problem_from_grpc_error
from gateway.problems import Problem, idempotency_key_in_flight, idempotency_key_reused, problem_response
from gateway.settings import GatewaySettings
from orderflow_kit.metrics import child

KEY_HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
MAX_KEY_LENGTH: Final = 255
# A claim outlives the request it guards: its gRPC call has the deadline, the claim this much more.
IN_FLIGHT_MARGIN_SECONDS: Final = 5.0
RECORD_PREFIX: Final = "orderflow:idempotency:"
# What a replay repeats besides the status and the body.
_REPLAYED_HEADERS: Final = ("content-type", "location")

# The draft's sf-string (RFC 8941, 3.3.3), or the bare value most clients send; either way
# printable ASCII, and `"k"` and `k` are the same key.
_SF_STRING: Final = rf'"((?:[ !#-\[\]-~]|\\["\\]){{1,{MAX_KEY_LENGTH}}})"'
_BARE: Final = rf"[!#-\[\]-~]{{1,{MAX_KEY_LENGTH}}}"
KEY_PATTERN: Final = rf"^(?:{_SF_STRING}|{_BARE})$"

# The record found, or nil once this request's claim is stored: one atomic step, so two requests
# with one key never both run.
_CLAIM: Final = """
local found = redis.call('GET', KEYS[1])
if found then return found end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
# The claim becomes the answer (ARGV[2]) or goes (an empty ARGV[2]), only while it is this
# request's own: once expired, the key may belong to another request.
_SETTLE: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""

log = structlog.get_logger()

REPLAYS = Counter("orderflow_idempotency_replays_total", "Requests answered with the stored answer of their key")
# reused: the key came with another request (422); in_flight: its first request was still running (409).
CONFLICTS = Counter(
    "orderflow_idempotency_conflicts_total", "Requests refused for their Idempotency-Key, by reason", ["reason"]
)
for _reason in ("reused", "in_flight"):
    child(CONFLICTS, _reason)  # each at 0 from the start


class _Record(BaseModel):
    """A key's state: claimed by the request `claim` (no status yet), or that request's answer."""

    fingerprint: str
    claim: str
    status: int | None = None
    headers: dict[str, str] = {}
    body: str = ""


def parse_key(value: str) -> str:
    """The key a header value names; 400 IDEMPOTENCY_KEY_INVALID for anything but a sane one."""
    if quoted := re.fullmatch(_SF_STRING, value):
        return re.sub(r'\\(["\\])', r"\1", quoted[1])
    if re.fullmatch(_BARE, value):
        return value
    raise _invalid_key(
        f"send 1 to {MAX_KEY_LENGTH} printable ASCII characters, as a quoted string "
        '(Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324") or bare'
    )


def client_request_id(key: str) -> str:
    """What orders dedupes on, per customer like the key: a digest, as a key may be longer than a
    client_request_id may be (128) or hold spaces."""
    return "idempotency-key:" + _digest(key)


def fingerprint(request: Mapping[str, Any]) -> str:
    """The request as the gateway understood it, whatever the JSON's spacing or key order."""
    return _digest(json.dumps(request, sort_keys=True, separators=(",", ":")))


def record_key(customer_id: str, key: str) -> str:
    """The Redis key; the idempotency key as a digest, so no key can reach into another's name."""
    return f"{RECORD_PREFIX}{customer_id}:{_digest(key)}"


@dataclass(frozen=True)
class IdempotencyStore:
    redis: Redis
    ttl_seconds: int
    in_flight_seconds: float

    @classmethod
    def from_settings(cls, redis: Redis, settings: GatewaySettings) -> "IdempotencyStore":
        in_flight = settings.grpc_deadline_seconds + IN_FLIGHT_MARGIN_SECONDS
        return cls(redis, settings.idempotency_key_ttl_seconds, in_flight)

    async def once(
        self, customer_id: str, key: str, request: Mapping[str, Any], run: Callable[[], Awaitable[Response]], path: str
    ) -> Response:
        """`run`'s answer, or the stored one; `run` runs at most once at a time per key."""
        record = record_key(customer_id, key)
        mine = _Record(fingerprint=fingerprint(request), claim=uuid.uuid4().hex)
        claim = mine.model_dump_json()
        earlier = await self._claim(record, claim)
        if earlier is not None:
            return _repeat(earlier, mine.fingerprint)
        try:
            response, final = await _answer(run, path)
        except BaseException:
            await self._settle(record, claim, "")
            raise
        await self._settle(record, claim, _answered(mine, response).model_dump_json() if final else "")
        return response

    async def _claim(self, record: str, claim: str) -> _Record | None:
        try:
            found = await self.redis.eval(_CLAIM, 1, record, claim, round(self.in_flight_seconds * 1000))
        except (RedisError, OSError) as error:
            log.warning("idempotency key not checked: nothing ordered", error=str(error))
            raise Problem(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "IDEMPOTENCY_UNAVAILABLE",
                "Idempotency keys cannot be checked right now, so nothing was ordered; retry later with the same key.",
            ) from None
        return None if found is None else _Record.model_validate_json(found)

    async def _settle(self, record: str, claim: str, answer: str) -> None:
        """Store the answer (or drop the claim). Should Redis fail now, the claim expires by itself
        and a retry reaches orders, which answers the same order by its client_request_id."""
        try:
            settled = await self.redis.eval(_SETTLE, 1, record, claim, answer, self.ttl_seconds)
        except (RedisError, OSError) as error:
            log.warning("idempotency key not settled; its claim expires by itself", error=str(error))
            return
        if not settled:
            log.warning("idempotency claim expired before the answer; another request's answer stands")


@dataclass(frozen=True)
class IdempotentRequest:
    """One request's key (None without the header) and what to do with it."""

    key: str | None
    store: IdempotencyStore
    path: str

    @property
    def client_request_id(self) -> str | None:
        return None if self.key is None else client_request_id(self.key)

    async def once(
        self, customer_id: str, request: Mapping[str, Any], run: Callable[[], Awaitable[Response]]
    ) -> Response:
        """Without a key, `run` as it is; with one, see the module doc. `request` is what the fingerprint is of."""
        if self.key is None:
            return await run()
        return await self.store.once(customer_id, self.key, request, run, self.path)


async def idempotent_request(
    request: Request,
    key: Annotated[
        str | None,
        Header(
            alias=KEY_HEADER,
            description=(
                "Makes the request safe to repeat (IETF draft-ietf-httpapi-idempotency-key-header): a repeat "
                "with the same key and body, within 24 h by default, gets the first answer again, with "
                f"`{REPLAYED_HEADER}: true`, and never a second order. 1 to {MAX_KEY_LENGTH} printable ASCII "
                'characters, quoted as the draft says (`"8e03978e-40d5-43e8-bc93-6894a57f9324"`) or bare; '
                "a random UUID is a good key. Keys are the token's customer's own."
            ),
            json_schema_extra={"pattern": KEY_PATTERN},
        ),
    ] = None,
) -> IdempotentRequest:
    if len(request.headers.getlist(KEY_HEADER)) > 1:
        raise _invalid_key("send one Idempotency-Key header")
    store: IdempotencyStore = request.app.state.idempotency
    return IdempotentRequest(None if key is None else parse_key(key), store, request.url.path)


Idempotency = Annotated[IdempotentRequest, Depends(idempotent_request)]


def documented(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` of an operation that takes a key, with the headers a key adds: an
    answer from the service may be a replay, and a 409 may ask to wait."""
    replayed = {
        REPLAYED_HEADER: {
            "description": "`true` when this is the stored answer to an earlier request with the same Idempotency-Key.",
            "schema": {"type": "string", "enum": ["true"]},
        }
    }
    responses[201] = {"headers": {"Location": {"description": "The order's URL.", "schema": {"type": "string"}}}}
    for status in (201, 400, 404, 409, 422):
        responses[status].setdefault("headers", {}).update(replayed)
    responses[409]["headers"]["Retry-After"] = {
        "description": "IDEMPOTENCY_KEY_IN_FLIGHT: seconds to wait before repeating the request.",
        "schema": {"type": "integer"},
    }
    return responses


async def _answer(run: Callable[[], Awaitable[Response]], path: str) -> tuple[Response, bool]:
    """`run`'s response, its refusals included, and whether it is final (an answer to store): not
    a 5xx, nor orders' "in flight", which says an earlier placement may still record the order."""
    try:
        response = await run()
    except grpc.aio.AioRpcError as error:
        return _refused(problem_from_grpc_error(error), path)
    except Problem as problem:
        return _refused(problem, path)
    return response, response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR


def _refused(problem: Problem, path: str) -> tuple[Response, bool]:
    final = problem.status < HTTPStatus.INTERNAL_SERVER_ERROR and problem.code != "IDEMPOTENCY_KEY_IN_FLIGHT"
    return problem_response(problem, path), final


def _answered(claim: _Record, response: Response) -> _Record:
    headers = {name: response.headers[name] for name in _REPLAYED_HEADERS if name in response.headers}
    return claim.model_copy(
        update={"status": response.status_code, "headers": headers, "body": bytes(response.body).decode()}
    )


def _repeat(earlier: _Record, fingerprint: str) -> Response:
    if earlier.fingerprint != fingerprint:
        child(CONFLICTS, "reused").inc()
        raise idempotency_key_reused()
    if earlier.status is None:
        child(CONFLICTS, "in_flight").inc()
        raise idempotency_key_in_flight()
    REPLAYS.inc()
    structlog.contextvars.bind_contextvars(idempotency="replayed")
    return Response(earlier.body, status_code=earlier.status, headers={**earlier.headers, REPLAYED_HEADER: "true"})


def _invalid_key(reason: str) -> Problem:
    return Problem(
        HTTPStatus.BAD_REQUEST, "IDEMPOTENCY_KEY_INVALID", f"The Idempotency-Key header is invalid: {reason}."
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
