"""Who is calling and what they may do, decided here and nowhere else.

Every operation on a customer's data needs a bearer JWT: `sub` is the customer id, `scope` a
space-separated list (orderflow_contracts.scopes), `exp` is required. The gateway verifies either
- HS256 tokens signed with ORDERFLOW_JWT_SECRET (development; `orderflow token` mints them), or
- RS256 tokens from an identity provider, keys from ORDERFLOW_JWT_JWKS_URL, with
  ORDERFLOW_JWT_ISSUER and ORDERFLOW_JWT_AUDIENCE checked,
and refuses to start with neither (`AuthNotConfigured`).

A customer (scope `orders`) places orders for itself and reads only its own data; scope `admin`
reads every customer's. Routes say what they need with a parameter: `CurrentPrincipal` (any valid
token), `CustomerPrincipal` (scope orders or admin) or `AdminPrincipal` (scope admin), and list
`auth_responses()`. The chain starts at FastAPI's HTTPBearer, so the OpenAPI document shows the
scheme on every operation that needs it. A missing or refused token is a 401 with an RFC 6750
challenge; a token without the scope an operation needs is a 403. An accepted token's request
counts against its customer's rate limit (gateway.rate_limits).

A token once accepted is remembered (TokenVerifier.remembered) until it expires, or for at most
ACCEPTED_TOKEN_SECONDS: a client sends the same token with request after request, and checking its
signature again each time was a good part of a request's CPU. A refused token is checked every time."""

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

import jwt
import structlog
from cachetools import TLRUCache
from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection
from starlette.types import Scope

from gateway.problem_openapi import problem_responses
from gateway.problems import Problem
from gateway.rate_limits import limit_customer
from gateway.settings import GatewaySettings
from orderflow_contracts.scopes import ADMIN_SCOPE, ORDERS_SCOPE
from orderflow_kit.dev_tokens import MIN_SECRET_BYTES

REALM: Final = "orderflow"
# Clock skew allowed between whoever issued a token and this gateway.
LEEWAY_SECONDS: Final = 30
# A JWKS fetch (at the first token, then when keys expire or rotate) waits at most this long.
JWKS_TIMEOUT_SECONDS: Final = 5.0
_REQUIRED_CLAIMS: Final = ["exp", "sub"]
# An accepted token is trusted again without a check until it expires, and no longer than this: as
# long as PyJWKClient trusts a key set it fetched (its default lifespan), so a key the identity
# provider withdrew stops being trusted as soon as it would without the memory.
ACCEPTED_TOKEN_SECONDS: Final = 300.0
# Accepted tokens remembered at once, the least recently used dropped first: a few MB at most.
ACCEPTED_TOKENS_MAX: Final = 10_000


class AuthNotConfigured(Exception):
    """The gateway has no way to verify tokens, or a dangerous one: it must not start."""


@dataclass(frozen=True)
class Principal:
    """Whom a valid token speaks for, and what it grants."""

    customer_id: str
    scopes: frozenset[str]
    # When the gateway stops accepting the token (its `exp` plus LEEWAY_SECONDS), in epoch seconds:
    # what ends a live event stream opened with it (gateway.live_events).
    expires_at: float = math.inf

    @property
    def is_admin(self) -> bool:
        return ADMIN_SCOPE in self.scopes

    def may_read(self, customer_id: str) -> bool:
        """Its own customer's data with scope orders; every customer's with scope admin."""
        return self.is_admin or (ORDERS_SCOPE in self.scopes and customer_id == self.customer_id)


@dataclass(frozen=True)
class _Accepted:
    principal: Principal
    # How long from now it may be trusted without a check.
    trusted_seconds: float


def _trusted_until(_token: str, accepted: _Accepted, now: float) -> float:
    return now + accepted.trusted_seconds


@dataclass(frozen=True)
class TokenVerifier:
    """Checks a token's signature, `exp` and, when configured, `iss` and `aud`. One key source:
    a shared secret (HS256) or a JWKS (RS256), never both, so neither kind of token can pass as
    the other."""

    algorithm: str
    secret: str | None = None
    jwks: jwt.PyJWKClient | None = None
    issuer: str | None = None
    audience: str | None = None
    _accepted: TLRUCache[str, _Accepted] = field(
        default_factory=lambda: TLRUCache(ACCEPTED_TOKENS_MAX, _trusted_until, time.monotonic),
        init=False,
        repr=False,
        compare=False,
    )

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> "TokenVerifier":
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret is not None else ""
        issuer, audience, jwks_url = settings.jwt_issuer, settings.jwt_audience, settings.jwt_jwks_url
        if secret and jwks_url:
            raise AuthNotConfigured(
                "ORDERFLOW_JWT_SECRET and ORDERFLOW_JWT_JWKS_URL are both set: tokens are verified one way. "
                "Unset the development secret to use the identity provider's keys, or the JWKS URL."
            )
        if jwks_url:
            if not (issuer and audience):
                raise AuthNotConfigured(
                    "ORDERFLOW_JWT_JWKS_URL needs ORDERFLOW_JWT_ISSUER and ORDERFLOW_JWT_AUDIENCE: without them a "
                    "token the identity provider issued for any other application would be accepted."
                )
            keys = jwt.PyJWKClient(jwks_url, timeout=JWKS_TIMEOUT_SECONDS)
            return cls("RS256", jwks=keys, issuer=issuer, audience=audience)
        if not secret:
            raise AuthNotConfigured(
                "No way to verify bearer tokens: set ORDERFLOW_JWT_SECRET (development, HS256; `make up` sets one) "
                "or ORDERFLOW_JWT_JWKS_URL with ORDERFLOW_JWT_ISSUER and ORDERFLOW_JWT_AUDIENCE (RS256)."
            )
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise AuthNotConfigured(
                f"ORDERFLOW_JWT_SECRET is too short to sign HS256 tokens safely: use at least {MIN_SECRET_BYTES} "
                "random bytes (`openssl rand -base64 32`)."
            )
        return cls("HS256", secret=secret, issuer=issuer, audience=audience)

    def remembered(self, token: str) -> Principal | None:
        """The principal of a token this verifier accepted lately and still trusts, without a check;
        None for any other."""
        accepted = self._accepted.get(token)
        return None if accepted is None else accepted.principal

    async def principal(self, token: str) -> Principal:
        """The token's principal; a Problem when it is refused."""
        if (remembered := self.remembered(token)) is not None:
            return remembered
        try:
            claims = jwt.decode(
                token,
                await self._key(token),
                algorithms=[self.algorithm],
                issuer=self.issuer,
                audience=self.audience,
                leeway=LEEWAY_SECONDS,
                options={"require": _REQUIRED_CLAIMS, "enforce_minimum_key_length": True},
            )
        except jwt.PyJWKClientConnectionError:
            raise Problem(
                503, "DEPENDENCY_UNAVAILABLE", "The keys that verify bearer tokens could not be fetched; retry later."
            ) from None
        except jwt.PyJWTError as error:
            raise invalid_token(str(error)) from None
        scope = claims.get("scope", "")
        if not claims["sub"] or not isinstance(scope, str):
            raise invalid_token("sub must name the customer and scope be a space-separated string")
        # PyJWT refuses a token once `exp` is LEEWAY_SECONDS past.
        expires_at = float(claims["exp"]) + LEEWAY_SECONDS
        principal = Principal(claims["sub"], frozenset(scope.split()), expires_at)
        valid_seconds = expires_at - time.time()
        self._accepted[token] = _Accepted(principal, min(valid_seconds, ACCEPTED_TOKEN_SECONDS))
        return principal

    async def _key(self, token: str) -> str | jwt.PyJWK:
        """The secret, or the JWKS key the token's `kid` names. PyJWKClient caches the key set and
        fetches it with blocking I/O when it is missing or stale (a rotation), so off the event loop."""
        if self.jwks is None:
            assert self.secret is not None
            return self.secret
        return await asyncio.to_thread(self.jwks.get_signing_key_from_jwt, token)


def invalid_token(reason: str) -> Problem:
    return _refused(401, "INVALID_TOKEN", f"The bearer token was refused: {reason}.", error_description=reason)


def insufficient_scope(scope: str) -> Problem:
    return _refused(403, "INSUFFICIENT_SCOPE", f"This operation needs a token with scope {scope}.", scope=scope)


def _refused(status: int, code: str, detail: str, **attributes: str) -> Problem:
    """A token refused: our code in lower case is the challenge's RFC 6750 error code."""
    return Problem(status, code, detail, headers=_challenge(error=code.lower(), **attributes))


def _challenge(**attributes: str) -> dict[str, str]:
    """The RFC 6750 WWW-Authenticate challenge; attribute values are quoted strings, which may not
    contain a double quote or a backslash."""
    quoted = "".join(f', {name}="{_printable(value)}"' for name, value in attributes.items())
    return {"WWW-Authenticate": f'Bearer realm="{REALM}"{quoted}'}


def _printable(text: str) -> str:
    return "".join(char for char in text.replace('"', "'") if " " <= char <= "~" and char != "\\")


_bearer = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="JWT",
    description=(
        "A JWT whose `sub` is the customer id and whose `scope` lists `orders` (the customer's own data) "
        "and/or `admin` (every customer's). For development: `orderflow token --customer c-1 [--admin]`."
    ),
    auto_error=False,  # the answer is a problem+json 401 with a challenge, below
)


async def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller's principal from `Authorization: Bearer <JWT>`; a 401 without one or when it is
    refused, a 429 when its customer is over its rate limit."""
    if credentials is None:
        raise Problem(
            401,
            "AUTHENTICATION_REQUIRED",
            "This operation needs a bearer token: send Authorization: Bearer <JWT>.",
            headers=_challenge(),
        )
    verifier: TokenVerifier = request.app.state.token_verifier
    principal = await verifier.principal(credentials.credentials)
    structlog.contextvars.bind_contextvars(sub=principal.customer_id)
    await limit_customer(request, principal.customer_id)
    return principal


async def known_customer(scope: Scope) -> str | None:
    """The customer a request's bearer token speaks for when the gateway accepted that token
    lately, without checking it again; else None. What lets the rate limits count the customer with
    the address, in one Redis call, before anything else is done (gateway.rate_limits)."""
    credentials = await _bearer(HTTPConnection(scope))
    if credentials is None:
        return None
    verifier: TokenVerifier = scope["app"].state.token_verifier
    principal = verifier.remembered(credentials.credentials)
    return None if principal is None else principal.customer_id


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


@dataclass(frozen=True)
class BearerToken:
    """The request's token as sent, and what checks it: for work that outlives the request's own
    check, a live event stream, to ask again whether the token is still accepted."""

    token: str
    verifier: TokenVerifier

    async def still_accepted(self) -> bool:
        """False once the token expired, or its key was withdrawn (a JWKS key set without it)."""
        try:
            principal = await self.verifier.principal(self.token)
        except Problem:
            return False
        return time.time() < principal.expires_at


async def bearer_token(
    request: Request,
    _accepted: CurrentPrincipal,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> BearerToken:
    """The token `authenticate` accepted (it runs first, and refuses a request without one)."""
    assert credentials is not None
    return BearerToken(credentials.credentials, request.app.state.token_verifier)


AcceptedToken = Annotated[BearerToken, Depends(bearer_token)]


def _requiring(scope: str, *alternatives: str) -> Callable[[Principal], Awaitable[Principal]]:
    async def scoped(principal: CurrentPrincipal) -> Principal:
        if principal.scopes.isdisjoint({scope, *alternatives}):
            raise insufficient_scope(scope)
        return principal

    return scoped


CustomerPrincipal = Annotated[Principal, Depends(_requiring(ORDERS_SCOPE, ADMIN_SCOPE))]
AdminPrincipal = Annotated[Principal, Depends(_requiring(ADMIN_SCOPE))]


def ordering_customer(principal: Principal, requested: str | None) -> str:
    """Whom an order is placed for: the token's own customer, whether the body names it or not.
    Naming another is a 403, for admins too: they read every customer's data, they order as themselves."""
    if ORDERS_SCOPE not in principal.scopes:
        raise insufficient_scope(ORDERS_SCOPE)
    if requested is not None and requested != principal.customer_id:
        raise _customer_forbidden(principal, "place orders for")
    return principal.customer_id


def check_may_read(principal: Principal, customer_id: str) -> None:
    if not principal.may_read(customer_id):
        raise _customer_forbidden(principal, "read the data of")


def check_may_see_order(principal: Principal, order_id: str, owner: str) -> None:
    """Another customer's order is answered exactly as one that does not exist (the orders
    service's ORDER_NOT_FOUND), so order ids reveal nothing."""
    if not principal.may_read(owner):
        raise Problem(404, "ORDER_NOT_FOUND", f"order {order_id} does not exist")


def _customer_forbidden(principal: Principal, action: str) -> Problem:
    return Problem(
        403, "CUSTOMER_FORBIDDEN", f"This token may {action} its own customer only ({principal.customer_id})."
    )


def auth_responses() -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for an operation that needs a token: the 401 with its challenge, the 403."""
    responses = problem_responses(401, 403)
    responses[401]["headers"] = {
        "WWW-Authenticate": {
            "description": 'The RFC 6750 challenge, e.g. Bearer realm="orderflow", error="invalid_token".',
            "schema": {"type": "string"},
        }
    }
    return responses


def authenticated_router(prefix: str, tag: str | None = None) -> APIRouter:
    """A router whose every operation needs a bearer token (checked before anything else about the
    request), its refusals in the document; `tag` groups its operations there."""
    return APIRouter(
        prefix=prefix,
        dependencies=[Depends(authenticate)],
        responses=auth_responses(),
        tags=[tag] if tag is not None else None,
    )
