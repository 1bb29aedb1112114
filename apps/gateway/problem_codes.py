"""The catalogue of problem codes: every `code` a client may branch on, with its title, the HTTP
statuses it comes with, who answers it and what it means. The one place they are written:
responses take their titles from it (gateway.problems), the OpenAPI document its examples
(gateway.problem_openapi), and docs/errors.md its "Codes" table (`make docs`, gateway.errors_document).

Any other code a service sends is passed on, titled with its HTTP status phrase."""

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True)
class ProblemType:
    title: str
    # Every HTTP status the code is answered with (VALIDATION_FAILED: the gateway's 422, a service's 400).
    statuses: tuple[int, ...]
    # Who answers it: the gateway itself, or the service whose refusal it passes on.
    source: str
    # When a client gets it and what to do, for docs/errors.md (Markdown, links relative to docs/).
    meaning: str
    # A typical `detail`, for the OpenAPI document's examples.
    example_detail: str


PROBLEM_TYPES: Final[Mapping[str, ProblemType]] = MappingProxyType(
    {
        "VALIDATION_FAILED": ProblemType(
            "Request validation failed",
            (422, 400),
            "gateway / any service",
            "The body, a query or a path parameter breaks the schema (422, `errors` lists each mistake): a "
            "missing field, a wrong type (a quantity must be a JSON "
            'integer: `"1"`, `1.5` and `true` are refused; `2.0` is the integer 2, as JSON Schema reads it), a '
            "line's quantity outside 1..1000 (lines for one SKU add up: an order holds one line per SKU, of up "
            "to 100 000 units), an unknown field, an id of the wrong shape (`orderflow_contracts.identifiers`; "
            "the OpenAPI document gives each pattern). Or a service's own rules refused it (400).",
            "The request does not match the API's schema; see errors.",
        ),
        "MALFORMED_JSON": ProblemType(
            "Malformed JSON body",
            (400,),
            "gateway",
            "The body is not parsable JSON.",
            "The request body is not valid JSON: Expecting value.",
        ),
        "UNSUPPORTED_MEDIA_TYPE": ProblemType(
            "Unsupported media type",
            (415,),
            "gateway",
            "A body that is not `application/json` (or `application/*+json`).",
            "Send the request body as application/json.",
        ),
        "BODY_TOO_LARGE": ProblemType(
            "Request body too large",
            (413,),
            "gateway",
            "The request body is larger than `ORDERFLOW_MAX_REQUEST_BODY_BYTES` (default 65536, 64 KiB). A "
            "declared `Content-Length` over it is refused before the body is read; a body without one (chunked) "
            "as soon as it passes the limit. No service is called, and the connection is closed "
            "(`Connection: close`). Any route may answer it.",
            "The request body is larger than 65536 bytes.",
        ),
        "NOT_FOUND": ProblemType(
            "Not found",
            (404,),
            "gateway",
            "No route has this path.",
            "There is nothing at this path.",
        ),
        "METHOD_NOT_ALLOWED": ProblemType(
            "Method not allowed",
            (405,),
            "gateway",
            "The path does not take this method; the `Allow` header lists every method it takes "
            "(`GET, POST` for `/v1/orders`).",
            "DELETE is not allowed here; the Allow header lists what is.",
        ),
        "AUTHENTICATION_REQUIRED": ProblemType(
            "Authentication required",
            (401,),
            "gateway",
            "An operation on a customer's data without `Authorization: Bearer <JWT>`.",
            "This operation needs a bearer token: send Authorization: Bearer <JWT>.",
        ),
        "INVALID_TOKEN": ProblemType(
            "Invalid token",
            (401,),
            "gateway",
            "The token is expired, malformed, badly signed, has no `exp` or `sub`, or (when configured) the "
            "wrong issuer or audience: get a new one. The detail says why.",
            "The token has expired.",
        ),
        "INSUFFICIENT_SCOPE": ProblemType(
            "Insufficient scope",
            (403,),
            "gateway",
            "The token lacks the scope the operation needs: its `scope` has neither `orders` nor `admin` "
            "(placing an order needs `orders`).",
            "This operation needs a token with scope orders.",
        ),
        "CUSTOMER_FORBIDDEN": ProblemType(
            "Another customer's data",
            (403,),
            "gateway",
            "The token's customer places an order for, or lists the orders or balance of, another customer: "
            "a token may act only for its own customer.",
            "The token acts for customer c-1, not for c-2.",
        ),
        "ORDER_NOT_FOUND": ProblemType(
            "Order not found",
            (404,),
            "orders, gateway",
            "No order has this id, or none the token may see: another customer's order is answered exactly "
            "as a missing one.",
            "order 0b7e8f4c-3a64-4c55-9d0e-4b8a2f7c1d23 not found",
        ),
        "DEAD_LETTER_NOT_FOUND": ProblemType(
            "Dead letter not found",
            (404,),
            "gateway",
            "`/v1/admin/dead-letters/{sequence}`: no dead letter has this sequence (never, or replayed or "
            "purged since).",
            "There is no dead letter with sequence 8.",
        ),
        "DEAD_LETTER_NOT_REPLAYABLE": ProblemType(
            "Dead letter not replayable",
            (409,),
            "gateway",
            "A replay of a dead letter without the `dlq-subject` / `dlq-stream` headers that say where it came "
            "from; nothing is published. Show or purge it.",
            "dead letter 8 has no dlq-subject or dlq-stream header; it can only be shown or purged.",
        ),
        "UNKNOWN_SKU": ProblemType(
            "Unknown SKU",
            (404,),
            "inventory (via orders, or a restock)",
            "A SKU is not in the catalog (a restock adds one only with a `name` and a `price_cents`); `skus` "
            "names them. Nothing was reserved or restocked.",
            "unknown SKU: MUG-999",
        ),
        "OUT_OF_STOCK": ProblemType(
            "Out of stock",
            (409,),
            "inventory (via orders)",
            "Not enough stock for some lines; `skus` names them. Nothing was reserved.",
            "not enough stock for LAMP-DESK (requested 50, available 12)",
        ),
        "PRODUCT_MISMATCH": ProblemType(
            "Product mismatch",
            (409,),
            "inventory (restock)",
            "A restock line names a SKU of the catalog, or one an earlier line of the same restock named, with "
            "another name or price: a restock never changes a product. `skus` names it; nothing was restocked.",
            "MUG-001 is in the catalog with another name or price",
        ),
        "STOCK_LIMIT": ProblemType(
            "Stock limit reached",
            (409,),
            "inventory (restock)",
            "A product would hold more than 2^31-1 units. `skus` names it; nothing was restocked.",
            "MUG-001 would hold more than 2147483647 units",
        ),
        "INVALID_PAGE_TOKEN": ProblemType(
            "Invalid page token",
            (400,),
            "orders",
            "`page_token` is not of the shape a `next_page_token` has (`<microseconds since 1970>.<order id>`, "
            "the OpenAPI document gives the pattern): pass it back as given.",
            "page_token is not a page token: pass next_page_token back as given",
        ),
        "INVALID_LAST_EVENT_ID": ProblemType(
            "Invalid Last-Event-ID",
            (400,),
            "gateway",
            "A live event feed's `Last-Event-ID` is not an id the feed gave (`<ORDERS sequence>.<DEAD_LETTERS "
            "sequence>`, see [patterns/live-events.md](patterns/live-events.md)).",
            "Last-Event-ID '12' is not an event id: expected <ORDERS sequence>.<DEAD_LETTERS sequence>, two "
            "unsigned integers of at most 19 digits without leading zeros.",
        ),
        "RATE_LIMITED": ProblemType(
            "Too many requests",
            (429,),
            "gateway (also any service's `RESOURCE_EXHAUSTED`)",
            "The client's address or the token's customer sent more requests than its rate limit allows "
            "([operations.md](operations.md#rate-limits)). `Retry-After` says in how many seconds to try "
            "again; no service was called, nothing was done. Any `/v1` operation may answer it.",
            "Too many requests from this customer; retry in 1 s.",
        ),
        "INVENTORY_UNAVAILABLE": ProblemType(
            "Inventory unavailable",
            (503,),
            "orders",
            "Inventory could not be reached, or failed to answer; nothing was ordered, and whatever inventory "
            "may have reserved for it is released in the background. Retry later.",
            "inventory is unavailable; nothing was ordered",
        ),
        "INVENTORY_TIMEOUT": ProblemType(
            "Inventory timed out",
            (504,),
            "orders",
            "Inventory did not answer in time; nothing was ordered. Retry later.",
            "inventory did not answer in time; nothing was ordered",
        ),
        "ORDERS_STORE_UNAVAILABLE": ProblemType(
            "Order store unavailable",
            (503,),
            "orders",
            "The order could not be stored; nothing was ordered.",
            "the order could not be stored; nothing was ordered",
        ),
        "DATABASE_UNAVAILABLE": ProblemType(
            "Database unavailable",
            (503,),
            "loyalty",
            "The loyalty database is unavailable.",
            "the loyalty database is unavailable",
        ),
        "DEPENDENCY_UNAVAILABLE": ProblemType(
            "Dependency unavailable",
            (503,),
            "gateway",
            "A service could not be reached; or NATS, for what reads it (live event feeds, dead-letter "
            "endpoints), is unreachable or has no streams yet; or the identity provider's JWKS could not be "
            "fetched to verify a token.",
            "A service behind the gateway is unavailable; retry later.",
        ),
        "DEPENDENCY_TIMEOUT": ProblemType(
            "Dependency timed out",
            (504,),
            "gateway",
            "A service did not answer within the deadline, or NATS not within "
            "`ORDERFLOW_BROKER_TIMEOUT_SECONDS` (default 5 s).",
            "A service behind the gateway did not answer in time; retry later.",
        ),
        "DEPENDENCY_FAILED": ProblemType(
            "Dependency failed",
            (502,),
            "gateway",
            "A service failed unexpectedly.",
            "A service behind the gateway failed.",
        ),
        "NOT_READY": ProblemType(
            "Not ready",
            (503,),
            "gateway",
            "`GET /readyz` only: a service does not report SERVING to the standard gRPC health check. `checks` "
            "says which, and whether Redis answers PING (without it the gateway is still ready: "
            "[operations.md](operations.md#how-readyz-reports)).",
            "Not ready: inventory unavailable.",
        ),
        "INTERNAL_ERROR": ProblemType(
            "Internal error",
            (500,),
            "gateway",
            "Something unexpected failed in the gateway. The detail says only that; the traceback is in the "
            "log line with the same request id.",
            "An unexpected error occurred; it has been logged with this request id.",
        ),
        "IDEMPOTENCY_KEY_INVALID": ProblemType(
            "Invalid Idempotency-Key",
            (400,),
            "gateway",
            "`POST /v1/orders`: the `Idempotency-Key` header is empty, longer than 255 characters, not "
            'printable ASCII, neither a quoted string (`"..."`, the draft\'s sf-string) nor a bare value '
            "without spaces and quotes, or sent twice. Nothing is ordered.",
            "Send one Idempotency-Key of 1 to 255 printable ASCII characters.",
        ),
        "IDEMPOTENCY_KEY_REUSED": ProblemType(
            "Idempotency-Key reused with another request",
            (422,),
            "gateway (also from orders' `CLIENT_REQUEST_ID_REUSED`)",
            "`POST /v1/orders`: the `Idempotency-Key` was used by this customer for another order (other "
            "items). Nothing is ordered; a new order needs a new key.",
            "This Idempotency-Key was used for another request (other items); a new order needs a new key.",
        ),
        "IDEMPOTENCY_KEY_IN_FLIGHT": ProblemType(
            "A request with this Idempotency-Key is in flight",
            (409,),
            "gateway (also from orders' `CLIENT_REQUEST_IN_FLIGHT`)",
            "`POST /v1/orders`: a request with the same `Idempotency-Key` is still being processed, here or in "
            "orders (its placement outlived a 504, for instance). `Retry-After` says when to repeat it for the "
            "answer; this answer is never kept as the key's.",
            "A request with this Idempotency-Key is still being processed; repeat it after Retry-After.",
        ),
        "IDEMPOTENCY_UNAVAILABLE": ProblemType(
            "Idempotency keys unavailable",
            (503,),
            "gateway",
            "`POST /v1/orders` with an `Idempotency-Key` while Redis, where keys are kept, does not answer: "
            "nothing is ordered (fail closed). Retry later with the same key; a request without a key is served.",
            "Idempotency keys cannot be checked right now; nothing was ordered. Retry later.",
        ),
    }
)
