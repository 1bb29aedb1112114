"""The shop: the catalog with its live availability, the cart (in the session), checkout, an
order's page with its live journey, my orders, my points, and development sign-in. Every figure
comes from the gateway's public API, called as the signed-in customer."""

import asyncio
import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from orderflow_contracts.identifiers import MAX_QUANTITY, ORDER_ID_PATTERN
from web import session
from web.gateway_client import ApiProblem
from web.journey import Journey
from web.pages import api, fragment, gateway_of, is_htmx, render, settings_of, signed_in, token_for
from web.session import Identity, check_csrf
from web.stock_watch import StockWatch

router = APIRouter()
posting = APIRouter(dependencies=[Depends(check_csrf)])

ORDERS_PAGE_SIZE: Final = 10
# A second click of "Place order" while the first is still being placed waits for its answer this long.
IN_FLIGHT_WAIT_SECONDS: Final = 10.0
# An SSE client waits this long before reconnecting after a refused feed (429, 404): not a tight loop.
REFUSED_RETRY_MS: Final = 15_000
HEARTBEAT_SECONDS: Final = 15
_ORDER_ID: Final = re.compile(ORDER_ID_PATTERN)

Quantity = Annotated[int, Form(ge=1, le=MAX_QUANTITY)]


async def _products(request: Request) -> list[dict[str, Any]]:
    products: list[dict[str, Any]] = (await gateway_of(request).call("GET", "/v1/products"))["products"]
    return products


@router.get("/")
async def catalog(request: Request) -> Response:
    return render(request, "catalog.html", {"products": await _products(request)})


@router.get("/catalog/events")
async def stock_events(request: Request) -> EventSourceResponse:
    """Each SKU's availability as an event of its own (`stock-<SKU>`), all first, then each change."""
    watch: StockWatch = request.app.state.stock_watch

    async def events() -> AsyncIterator[ServerSentEvent]:
        async for changed in watch.changes():
            for sku, available in changed.items():
                yield ServerSentEvent(fragment(request, "_stock.html", {"available": available}), event=f"stock-{sku}")

    return EventSourceResponse(events(), ping=HEARTBEAT_SECONDS)


@posting.post("/cart/add")
async def add_to_cart(request: Request, sku: Annotated[str, Form(max_length=64)], quantity: Quantity = 1) -> Response:
    cart = session.cart_of(request)
    cart[sku] = min(cart.get(sku, 0) + quantity, MAX_QUANTITY)
    session.set_cart(request, cart)
    if is_htmx(request):
        return render(request, "_cart_added.html", {"sku": sku, "quantity": quantity})
    return RedirectResponse("/cart", status_code=303)


@posting.post("/cart/update")
async def update_cart(
    request: Request, sku: Annotated[str, Form(max_length=64)], quantity: Annotated[int, Form(ge=0, le=MAX_QUANTITY)]
) -> Response:
    cart = session.cart_of(request)
    cart[sku] = quantity
    session.set_cart(request, cart)
    return RedirectResponse("/cart", status_code=303)


@router.get("/cart")
async def cart_page(request: Request) -> Response:
    """The checkout form carries the lines shown and an Idempotency-Key made now: submitting it
    twice (a double click, a reload) places one order."""
    cart = session.cart_of(request)
    products = {product["sku"]: product for product in await _products(request)} if cart else {}
    lines = [
        {"product": products.get(sku), "sku": sku, "quantity": quantity, "cents": _price(products, sku) * quantity}
        for sku, quantity in sorted(cart.items())
    ]
    context = {
        "lines": lines,
        "total_cents": sum(_price(products, sku) * quantity for sku, quantity in cart.items()),
        "currency": next((product["currency"] for product in products.values()), "EUR"),
        "idempotency_key": str(uuid.uuid4()),
    }
    return render(request, "cart.html", context)


def _price(products: dict[str, dict[str, Any]], sku: str) -> int:
    product = products.get(sku)
    return int(product["price_cents"]) if product else 0


@posting.post("/checkout")
async def checkout(
    request: Request,
    idempotency_key: Annotated[str, Form(min_length=1, max_length=128, pattern=r"^[!-~]+$")],
    sku: Annotated[list[str], Form(min_length=1, max_length=100)],
    quantity: Annotated[list[int], Form(min_length=1, max_length=100)],
) -> Response:
    who = signed_in(request)
    items = [
        {"sku": line_sku, "quantity": line_quantity} for line_sku, line_quantity in zip(sku, quantity, strict=False)
    ]
    # The trace id follows from the key: a repeat of this checkout belongs to the first one's trace.
    trace_id = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    headers = {"Idempotency-Key": idempotency_key, "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    order = await _place_once(request, who, {"items": items}, headers)
    session.set_cart(request, {})
    session.remember_trace(request, order["order_id"], trace_id)
    return RedirectResponse(f"/orders/{order['order_id']}", status_code=303)


async def _place_once(request: Request, who: Identity, body: dict[str, Any], headers: dict[str, str]) -> Any:
    """POST /v1/orders; while the same key is still being placed (a double click), wait for that answer."""
    deadline = time.monotonic() + IN_FLIGHT_WAIT_SECONDS
    while True:
        try:
            return await gateway_of(request).call(
                "POST", "/v1/orders", token=token_for(request, who), json=body, headers=headers
            )
        except ApiProblem as problem:
            if problem.code != "IDEMPOTENCY_KEY_IN_FLIGHT" or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


@router.get("/orders/{order_id}")
async def order_page(request: Request, order_id: str) -> Response:
    order = await api(request, "GET", f"/v1/orders/{_order_id(order_id)}")
    journey = Journey(datetime.fromisoformat(order["created_at"]))
    context = {"order": order, "journey": journey, "trace_id": session.trace_of(request, order["order_id"])}
    return render(request, "order.html", context)


def _order_id(order_id: str) -> str:
    """An id that is not an order id is a 404 here, as the gateway would say, without asking it."""
    if _ORDER_ID.fullmatch(order_id) is None:
        raise ApiProblem(404, "NOT_FOUND", "Not found", f"There is no order {order_id!r}.")
    return order_id


@router.get("/orders/{order_id}/journey")
async def journey_events(request: Request, order_id: str) -> EventSourceResponse:
    """The order's live events from the gateway, relayed as the whole journey re-rendered at
    each change (event `journey`): a browser that reconnects gets it all again, never twice."""
    who = signed_in(request)
    token = token_for(request, who)
    gateway = gateway_of(request)
    path = f"/v1/orders/{_order_id(order_id)}"
    order = await gateway.call("GET", path, token=token)
    journey = Journey(datetime.fromisoformat(order["created_at"]))

    async def events() -> AsyncIterator[ServerSentEvent]:
        try:
            async for event in gateway.events(f"{path}/events", token=token):
                if journey.apply(event.event, json.loads(event.data)):
                    yield ServerSentEvent(fragment(request, "_journey.html", {"journey": journey}), event="journey")
        except ApiProblem as problem:
            html = fragment(request, "_problem.html", {"problem": problem})
            yield ServerSentEvent(html, event="journey-problem", retry=REFUSED_RETRY_MS)

    return EventSourceResponse(events(), ping=HEARTBEAT_SECONDS)


@router.get("/orders")
async def my_orders(request: Request, page_token: Annotated[str | None, Query(max_length=1024)] = None) -> Response:
    who = signed_in(request)
    params: dict[str, str | int] = {"customer_id": who.customer_id, "page_size": ORDERS_PAGE_SIZE}
    if page_token:
        params["page_token"] = page_token
    page = await api(request, "GET", "/v1/orders", params=params)
    return render(request, "orders.html", {"page": page, "first_page": page_token is None})


@router.get("/points")
async def my_points(request: Request) -> Response:
    who = signed_in(request)
    balance = await api(request, "GET", f"/v1/customers/{who.customer_id}/loyalty")
    return render(request, "points.html", {"balance": balance})


@router.get("/signin")
async def sign_in_page(
    request: Request, next: Annotated[str, Query(max_length=256)] = "/", admin: bool = False
) -> Response:
    suggestion = "ops-1" if admin else f"c-{secrets.token_hex(3)}"
    return render(request, "signin.html", {"next": _local(next), "suggestion": suggestion, "admin": admin})


@posting.post("/signin")
async def sign_in(
    request: Request,
    customer_id: Annotated[str, Form(max_length=64)],
    admin: Annotated[bool, Form()] = False,
    next: Annotated[str, Form(max_length=256)] = "/",
) -> Response:
    """Only while the web app has the gateway's development secret; the gateway is asked once
    with the new token, so a secret it does not share is said here, not on the next page."""
    settings = settings_of(request)
    if settings.jwt_secret is None or not session.valid_customer_id(customer_id):
        context = {"next": _local(next), "suggestion": customer_id, "admin": admin, "invalid": True}
        return render(request, "signin.html", context, status=400 if settings.jwt_secret else 503)
    who = Identity(customer_id, admin)
    await gateway_of(request).call(
        "GET", f"/v1/customers/{customer_id}/loyalty", token=who.token(settings.jwt_secret.get_secret_value(), 60)
    )
    session.sign_in(request, who)
    return RedirectResponse(_local(next), status_code=303)


@posting.post("/signout")
async def sign_out(request: Request) -> Response:
    session.sign_out(request)
    return RedirectResponse("/", status_code=303)


def _local(target: str) -> str:
    """Only a path of this site: never an open redirect."""
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else "/"
