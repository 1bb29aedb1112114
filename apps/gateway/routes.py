"""The REST API: each route validates, calls one service, maps the answer. Errors are not handled
here: they propagate to problem_handlers.py, which turns each into problem+json. Who may do what is
gateway.auth's call: routes only ask it."""

import email.message
import functools
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Path, Query, Request, Response

from gateway import auth, idempotency, mapping
from gateway.auth import CustomerPrincipal, authenticated_router
from gateway.idempotency import Idempotency
from gateway.problem_openapi import problem_responses
from gateway.problems import Problem
from gateway.schemas import CreateOrderIn, LoyaltyBalanceOut, OrderOut, OrderPage, ProductList
from gateway.upstreams import UpstreamsDep
from orderflow_contracts.identifiers import CUSTOMER_ID_PATTERN, ORDER_ID_PATTERN, PAGE_TOKEN_PATTERN
from orderflow_contracts.inventory.v1 import inventory_pb2
from orderflow_contracts.loyalty.v1 import loyalty_pb2
from orderflow_contracts.orders.v1 import orders_pb2

UPSTREAM_FAILURES = (502, 503, 504)

PREFIX = "/v1"

# Open to anyone: the catalog.
router = APIRouter(prefix=PREFIX)
# A customer's data: every route needs a bearer token, checked before anything else about the request
# but a JSON body that does not parse (FastAPI reads the body before it runs dependencies): that is a 400.
authenticated = authenticated_router(PREFIX)


# A pattern, not a validator function: the OpenAPI document then says what an order id looks like.
OrderId = Annotated[str, Path(pattern=ORDER_ID_PATTERN, examples=["0b7e8f4c-3a64-4c55-9d0e-4b8a2f7c1d23"])]


async def require_json(request: Request) -> None:
    """FastAPI would read a non-JSON body as bytes and report a 422; the honest answer is 415."""
    if not _is_json(request.headers.get("content-type", "")):
        raise Problem(415, "UNSUPPORTED_MEDIA_TYPE", "Send the request body as application/json.")


@functools.lru_cache(maxsize=64)
def _is_json(content_type: str) -> bool:
    """Parsed as email does it (parameters, case); clients send one or two values, so each is parsed once."""
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


@authenticated.post(
    "/orders",
    status_code=201,
    response_model=OrderOut,
    dependencies=[Depends(require_json)],
    responses=idempotency.documented(problem_responses(400, 404, 409, 415, 422, *UPSTREAM_FAILURES)),
)
async def create_order(
    body: CreateOrderIn, principal: CustomerPrincipal, upstreams: UpstreamsDep, idempotent: Idempotency
) -> Response:
    """Reserve the items' stock and create the order, for the token's customer (scope orders);
    409 OUT_OF_STOCK names the short SKUs. With an Idempotency-Key, a repeat gets the first answer
    (422 IDEMPOTENCY_KEY_REUSED with other items, 409 IDEMPOTENCY_KEY_IN_FLIGHT while it runs,
    503 IDEMPOTENCY_UNAVAILABLE and nothing ordered when keys cannot be checked)."""
    customer_id = auth.ordering_customer(principal, body.customer_id)
    request = mapping.create_order_request(customer_id, body, idempotent.client_request_id)

    async def place() -> Response:
        order = await upstreams.call(upstreams.orders.CreateOrder, request)
        structlog.contextvars.bind_contextvars(order_id=order.order_id)
        location = {"Location": f"{PREFIX}/orders/{order.order_id}"}
        return Response(mapping.order_out(order).model_dump_json(), 201, location, media_type="application/json")

    return await idempotent.once(customer_id, mapping.understood_order(customer_id, body), place)


@authenticated.get("/orders/{order_id}", responses=problem_responses(400, 404, 422, *UPSTREAM_FAILURES))
async def get_order(order_id: OrderId, principal: CustomerPrincipal, upstreams: UpstreamsDep) -> OrderOut:
    """Another customer's order is a 404, as if it did not exist; scope admin reads any."""
    structlog.contextvars.bind_contextvars(order_id=order_id)
    order = await upstreams.call(upstreams.orders.GetOrder, orders_pb2.GetOrderRequest(order_id=order_id))
    auth.check_may_see_order(principal, order_id, order.customer_id)
    return mapping.order_out(order)


@authenticated.get("/orders", responses=problem_responses(400, 422, *UPSTREAM_FAILURES))
async def list_orders(
    principal: CustomerPrincipal,
    upstreams: UpstreamsDep,
    customer_id: Annotated[str, Query(pattern=CUSTOMER_ID_PATTERN)],
    page_size: Annotated[int | None, Query(ge=1, le=100, description="Default 20.")] = None,
    page_token: Annotated[
        str | None,
        Query(
            max_length=1024,
            description="The next_page_token of the page before, as given; another value is a 400 INVALID_PAGE_TOKEN.",
            # Checked by orders, whose INVALID_PAGE_TOKEN says more than a generic 422 would.
            json_schema_extra={"pattern": PAGE_TOKEN_PATTERN},
        ),
    ] = None,
) -> OrderPage:
    """A customer's orders, a page at a time: the token's own customer's, or any with scope admin."""
    auth.check_may_read(principal, customer_id)
    request = orders_pb2.ListOrdersRequest(customer_id=customer_id, page_size=page_size or 0, page_token=page_token)
    return mapping.order_page(await upstreams.call(upstreams.orders.ListOrders, request))


@router.get("/products", responses=problem_responses(*UPSTREAM_FAILURES))
async def list_products(upstreams: UpstreamsDep) -> ProductList:
    response = await upstreams.call(upstreams.inventory.ListProducts, inventory_pb2.ListProductsRequest())
    return mapping.product_list(response)


@authenticated.get("/customers/{customer_id}/loyalty", responses=problem_responses(400, 422, *UPSTREAM_FAILURES))
async def get_loyalty_balance(
    customer_id: Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN)],
    principal: CustomerPrincipal,
    upstreams: UpstreamsDep,
) -> LoyaltyBalanceOut:
    """A customer with no awarded orders yet has zero points. The token's own customer's, or any with scope admin."""
    auth.check_may_read(principal, customer_id)
    balance = await upstreams.call(upstreams.loyalty.GetBalance, loyalty_pb2.GetBalanceRequest(customer_id=customer_id))
    return mapping.loyalty_balance(balance)
