"""The JSON the REST API takes and gives. Requests are strict (a quantity is a JSON integer, unknown
fields are mistakes) and follow the id shapes every service accepts, so most mistakes are answered
here with a 422 before any service is called."""

from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from orderflow_contracts.identifiers import (
    CUSTOMER_ID_PATTERN,
    MAX_ORDER_LINES,
    MAX_PRICE_CENTS,
    MAX_PRODUCT_NAME_LENGTH,
    MAX_QUANTITY,
    MAX_RESTOCK_UNITS,
    PRODUCT_NAME_PATTERN,
    SKU_PATTERN,
    is_product_name,
)


def _integral(value: object) -> object:
    """JSON Schema's integer is any number without a fraction part, so 2.0 is the integer 2 as the
    document reads it; strict mode still refuses "2" and true. (A number past 2^53 written with a
    fraction part has lost its last digits in the JSON parser already, as in most clients' own.)"""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Every integer of a request body.
JsonInt = Annotated[int, BeforeValidator(_integral)]
CustomerId = Annotated[str, Field(pattern=CUSTOMER_ID_PATTERN, examples=["customer-42"])]
Sku = Annotated[str, Field(pattern=SKU_PATTERN, examples=["SKU-1"])]


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class FromMessage(BaseModel):
    """A response with the fields of the gRPC message it answers with: `model_validate(message)`
    reads them off the message by name."""

    model_config = ConfigDict(from_attributes=True)


class OrderItemIn(_Request):
    sku: Sku
    quantity: JsonInt = Field(ge=1, le=MAX_QUANTITY)


class CreateOrderIn(_Request):
    customer_id: CustomerId | None = Field(
        default=None, description="The token's customer (its sub) when left out; naming another is a 403."
    )
    items: list[OrderItemIn] = Field(
        min_length=1,
        max_length=MAX_ORDER_LINES,
        description="Lines for the same SKU add up: the order has one line per SKU, with their total quantity.",
    )

    def quantities(self) -> dict[str, int]:
        """The units of each SKU, its lines added up, in the order SKUs first appear. A rule a
        schema can state (JSON Schema cannot say "one line per SKU"), and never more than the
        services take per item (MAX_SKU_QUANTITY): every request the document allows is served."""
        quantities: dict[str, int] = {}
        for item in self.items:
            quantities[item.sku] = quantities.get(item.sku, 0) + item.quantity
        return quantities


class OrderLineOut(FromMessage):
    sku: str
    quantity: int
    unit_price_cents: int = Field(description="The catalog price when the stock was reserved.")


class OrderOut(BaseModel):
    order_id: str
    customer_id: str
    status: str = Field(examples=["CREATED"])
    items: list[OrderLineOut]
    total_cents: int
    currency: str = Field(examples=["EUR"])
    created_at: datetime = Field(description="RFC 3339, UTC.")


class OrderPage(BaseModel):
    orders: list[OrderOut]
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last page.")


class ProductOut(FromMessage):
    sku: str
    name: str
    price_cents: int
    currency: str
    available: int = Field(description="Stock that can still be ordered.")


class ProductList(BaseModel):
    products: list[ProductOut]


def _restock_line_schema(schema: dict[str, Any]) -> None:
    """The document states what RestockLineIn's validators check: a name's characters, and name
    and price_cents together (both given, or neither, null being none)."""
    given = {}
    for field in ("name", "price_cents"):
        [given[field]] = [branch for branch in schema["properties"][field]["anyOf"] if branch.get("type") != "null"]
    given["name"]["pattern"] = PRODUCT_NAME_PATTERN
    # Each branch restates the whole of each field's schema: generators that pick a branch (schemathesis)
    # need not merge it with `properties` to draw valid values.
    schema["anyOf"] = [
        {"required": ["name", "price_cents"], "properties": given},
        {"properties": {"name": {"type": "null"}, "price_cents": {"type": "null"}}},
    ]


class RestockLineIn(_Request):
    model_config = ConfigDict(json_schema_extra=_restock_line_schema)

    sku: Sku
    quantity: JsonInt = Field(ge=1, le=MAX_RESTOCK_UNITS, description="Units received. Lines for the same SKU add up.")
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PRODUCT_NAME_LENGTH,
        description="With price_cents, adds a SKU new to the catalog; for a SKU already there, its own name.",
        examples=["Enamel mug"],
    )
    price_cents: Annotated[int, Field(ge=0, le=MAX_PRICE_CENTS), BeforeValidator(_integral)] | None = Field(
        default=None, description="Comes with name, in the catalog's currency.", examples=[1250]
    )

    @field_validator("name")
    @classmethod
    def _printable(cls, name: str | None) -> str | None:
        if name is not None and not is_product_name(name):
            raise PydanticCustomError("not_printable", "a product name is printable characters only")
        return name

    @model_validator(mode="after")
    def _name_and_price_together(self) -> Self:
        if (self.name is None) != (self.price_cents is None):
            raise PydanticCustomError("name_without_price", "name and price_cents come together, or not at all")
        return self


# Lines of one POST /v1/admin/restock: its JSON body is read whole, so fewer than a RestockStream
# takes (MAX_RESTOCK_LINES), to keep the largest valid body a few MiB (gateway.restock).
MAX_RESTOCK_REQUEST_LINES = 1000


class RestockIn(_Request):
    lines: list[RestockLineIn] = Field(
        min_length=1, max_length=MAX_RESTOCK_REQUEST_LINES, description="Applied all together, or none of them."
    )


class RestockedProductOut(FromMessage):
    sku: str
    units_added: int = Field(description="All the restock's lines for this SKU together.")
    available: int = Field(description="Stock that can be ordered, after the restock.")
    added_to_catalog: bool = Field(description="True when this restock added the SKU to the catalog.")


class RestockSummaryOut(BaseModel):
    lines: int = Field(description="How many lines the restock held.")
    products: list[RestockedProductOut] = Field(description="One per SKU, in SKU order.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lines": 2,
                    "products": [
                        {"sku": "MUG-RED", "units_added": 25, "available": 25, "added_to_catalog": True},
                        {"sku": "SKU-1", "units_added": 100, "available": 142, "added_to_catalog": False},
                    ],
                }
            ]
        }
    )


class LoyaltyBalanceOut(FromMessage):
    customer_id: str
    points: int
    orders_awarded: int


class Alive(BaseModel):
    status: str = Field(examples=["alive"])


class Ready(BaseModel):
    status: str = Field(examples=["ready"])
    checks: dict[str, str] = Field(examples=[{"orders": "ok", "inventory": "ok", "loyalty": "ok", "redis": "ok"}])
