"""Stock arrives: an admin sends every line of a delivery at once, and the gateway streams them to
inventory's RestockStream, which applies all of them in one transaction or none (inventory.restocking).
A restock is not idempotent, so neither the gateway nor its channel ever retries one: after a 5xx,
check the catalog (GET /v1/products) before sending it again."""

from typing import Annotated, Any

from fastapi import Body, Depends
from fastapi.openapi.models import Example

from gateway import mapping
from gateway.auth import AdminPrincipal, authenticated_router
from gateway.problem_openapi import problem_responses
from gateway.routes import PREFIX, UPSTREAM_FAILURES, require_json
from gateway.schemas import RestockIn, RestockSummaryOut
from gateway.upstreams import UpstreamsDep

router = authenticated_router(f"{PREFIX}/admin")
PATH = f"{PREFIX}/admin/restock"
# A restock's body may be this large whatever ORDERFLOW_MAX_REQUEST_BODY_BYTES says (gateway.body_limit):
# MAX_RESTOCK_REQUEST_LINES of the largest lines the schema allows (a 200-character name, each
# character \u-escaped as a surrogate pair: about 2.6 KB a line) come to about 2.6 MB.
MAX_BODY_BYTES = 4 * 1024 * 1024

_EXAMPLES: dict[str, Example] = {
    "restock": {
        "summary": "Stock for a SKU in the catalog",
        "value": {"lines": [{"sku": "SKU-1", "quantity": 100}]},
    },
    "new product": {
        "summary": "A SKU new to the catalog, with its name and price",
        "value": {"lines": [{"sku": "MUG-RED", "quantity": 25, "name": "Red enamel mug", "price_cents": 1250}]},
    },
}


def _responses() -> dict[int | str, dict[str, Any]]:
    responses = problem_responses(400, 404, 409, 413, 415, 422, *UPSTREAM_FAILURES)
    responses[413]["description"] += f" (this operation: a body larger than {MAX_BODY_BYTES} bytes)"
    return responses


@router.post("/restock", dependencies=[Depends(require_json)], responses=_responses())
async def restock(
    principal: AdminPrincipal,
    upstreams: UpstreamsDep,
    body: Annotated[RestockIn, Body(openapi_examples=_EXAMPLES)],
) -> RestockSummaryOut:
    """Add received stock, and new products, to the catalog (scope admin). All lines or none: 404
    UNKNOWN_SKU for a SKU neither in the catalog nor given a name and price, 409 PRODUCT_MISMATCH
    for a name or price other than the catalog's or an earlier line's, 409 STOCK_LIMIT for a
    product that would hold more than 2^31-1 units. A body of up to 4 MiB is read, whatever the
    limit of other operations: every restock the schema allows fits."""
    summary = await upstreams.call(upstreams.inventory.RestockStream, mapping.restock_requests(body))
    return mapping.restock_summary(summary)
