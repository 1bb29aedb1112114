"""Who is signed in, their cart, and the CSRF token: all in the session, a cookie signed by the
web app (Starlette's SessionMiddleware: HttpOnly, SameSite=Lax), so the web app keeps no state.

Sign-in is for development: anyone may pick a customer id (or an admin), and the web app mints
that identity's bearer token with the gateway's development secret for each API call. Every POST
carries the session's CSRF token (a form field, or the X-CSRF-Token header htmx sends); a
request without it is refused before it does anything."""

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from fastapi import Request

from orderflow_contracts.identifiers import CUSTOMER_ID_PATTERN
from orderflow_contracts.scopes import ADMIN_SCOPE, ORDERS_SCOPE
from orderflow_kit.dev_tokens import mint_token

CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "X-CSRF-Token"
# Order id -> trace id of the orders this browser placed, newest last, so the order page can show it.
REMEMBERED_TRACES: Final = 20
_CUSTOMER_ID: Final = re.compile(CUSTOMER_ID_PATTERN)


class CsrfRefused(Exception):
    """A POST without this session's CSRF token."""


class SignInRequired(Exception):
    """The page needs a signed-in customer (or an admin)."""

    def __init__(self, admin: bool = False) -> None:
        self.admin = admin


@dataclass(frozen=True)
class Identity:
    customer_id: str
    admin: bool

    def token(self, secret: str, ttl_seconds: int) -> str:
        scopes = [ORDERS_SCOPE, ADMIN_SCOPE] if self.admin else [ORDERS_SCOPE]
        return mint_token(secret, self.customer_id, scopes, timedelta(seconds=ttl_seconds))


def valid_customer_id(value: str) -> bool:
    return _CUSTOMER_ID.fullmatch(value) is not None


def csrf_token(request: Request) -> str:
    """This session's CSRF token, made on first use."""
    token = request.session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[CSRF_FIELD] = token
    return token


async def check_csrf(request: Request) -> None:
    """Every POST's first step: the session's token, from the header or the form."""
    expected = request.session.get(CSRF_FIELD)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not isinstance(expected, str) or sent is None or not hmac.compare_digest(expected, sent):
        raise CsrfRefused()


def identity(request: Request) -> Identity | None:
    who = request.session.get("identity")
    if not isinstance(who, dict) or not isinstance(who.get("customer_id"), str):
        return None
    return Identity(who["customer_id"], bool(who.get("admin")))


def sign_in(request: Request, who: Identity) -> None:
    """A new session: the cart stays, the CSRF token is replaced (no fixation across identities)."""
    cart = cart_of(request)
    request.session.clear()
    request.session["identity"] = {"customer_id": who.customer_id, "admin": who.admin}
    request.session["cart"] = cart
    csrf_token(request)


def sign_out(request: Request) -> None:
    request.session.clear()


def cart_of(request: Request) -> dict[str, int]:
    """SKU -> quantity."""
    cart: Any = request.session.get("cart")
    if not isinstance(cart, dict):
        return {}
    return {str(sku): int(quantity) for sku, quantity in cart.items() if isinstance(quantity, int) and quantity > 0}


def set_cart(request: Request, cart: dict[str, int]) -> None:
    request.session["cart"] = {sku: quantity for sku, quantity in cart.items() if quantity > 0}


def remember_trace(request: Request, order_id: str, trace_id: str) -> None:
    traces: Any = request.session.get("traces")
    remembered = dict(traces) if isinstance(traces, dict) else {}
    remembered.pop(order_id, None)
    remembered[order_id] = trace_id
    request.session["traces"] = dict(list(remembered.items())[-REMEMBERED_TRACES:])


def trace_of(request: Request, order_id: str) -> str | None:
    traces: Any = request.session.get("traces")
    value = traces.get(order_id) if isinstance(traces, dict) else None
    return value if isinstance(value, str) else None
