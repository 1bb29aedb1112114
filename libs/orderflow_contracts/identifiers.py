"""The shape of ids every service accepts; anything else is INVALID_ARGUMENT (or 4xx over HTTP)."""

import re
import uuid

CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
SKU_PATTERN = r"^[A-Z0-9][A-Z0-9-]{0,63}$"
# What `is_order_id` accepts, for schemas: a UUID in its canonical lower-case text form.
ORDER_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# A page of ListOrders / GET /v1/orders continues after the order a token names: the microseconds
# from the Unix epoch to its created_at (at most 16 digits, so before the year 2286), a dot, its id.
# Clients pass tokens back as given; every string of this shape is a token (orders.page_tokens).
PAGE_TOKEN_PATTERN = r"^(?:0|[1-9][0-9]{0,15})\." + ORDER_ID_PATTERN.removeprefix("^")
# A client's id for one CreateOrder request (an Idempotency-Key, say): printable ASCII, no spaces.
CLIENT_REQUEST_ID_PATTERN = r"^[!-~]{1,128}$"
# An order request over HTTP (POST /v1/orders): its lines, and a line's units. Lines for one SKU
# add up (the gateway sends one item per SKU), so one SKU's units in an order, what CreateOrder,
# ReserveStock and the OrderCreated event take per item, reach at most MAX_SKU_QUANTITY.
MAX_QUANTITY = 1000
MAX_ORDER_LINES = 100
MAX_SKU_QUANTITY = MAX_ORDER_LINES * MAX_QUANTITY
# A restock (InventoryService.RestockStream, POST /v1/admin/restock): its lines, a line's units,
# and the name of a product it adds to the catalog.
MAX_RESTOCK_LINES = 10_000
MAX_RESTOCK_UNITS = 1_000_000
MAX_PRODUCT_NAME_LENGTH = 200
# A product name is printable: none of the characters below, which are, in the Basic Multilingual
# Plane, those Python's str.isprintable refuses (control, format, separator but the space, private
# use), as of Unicode 14. Written out, not taken from unicodedata, so that the rule (and the OpenAPI
# document's pattern) is the same whatever Python runs it. Lone surrogates are no text at all:
# protobuf strings cannot hold them, and the gateway refuses them in any string (pydantic's
# string_unicode); a surrogate range here would make the pattern one Rust-based validators refuse.
_UNPRINTABLE = (
    r"\x00-\x1f\x7f-\x9f\xa0\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u1680\u180e"
    r"\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u206f\u3000\ue000-\uf8ff\ufeff\ufff9-\ufffb"
)
PRODUCT_NAME_PATTERN = rf"^[^{_UNPRINTABLE}]+$"
# Money is integer cents, stored as BIGINT: no amount of any event or message is larger.
MAX_CENTS = 2**63 - 1
# A product's price, as a restock sets it: the largest integer a JSON number holds exactly in every
# client (I-JSON, RFC 7493), so the API's bound is the same number wherever it is read.
MAX_PRICE_CENTS = 2**53 - 1

_customer_id = re.compile(CUSTOMER_ID_PATTERN)
_sku = re.compile(SKU_PATTERN)
_client_request_id = re.compile(CLIENT_REQUEST_ID_PATTERN)
_product_name = re.compile(PRODUCT_NAME_PATTERN)


def is_customer_id(value: str) -> bool:
    return bool(_customer_id.fullmatch(value))


def is_sku(value: str) -> bool:
    return bool(_sku.fullmatch(value))


def is_client_request_id(value: str) -> bool:
    return bool(_client_request_id.fullmatch(value))


def is_product_name(value: str) -> bool:
    """1 to MAX_PRODUCT_NAME_LENGTH characters, all printable (PRODUCT_NAME_PATTERN)."""
    return len(value) <= MAX_PRODUCT_NAME_LENGTH and bool(_product_name.fullmatch(value))


def is_order_id(value: str) -> bool:
    """Order ids are UUIDs in their canonical lower-case text form."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
