"""The JSON the REST API takes and gives. Requests are strict (a quantity is a JSON integer, unknown
fields are mistakes) and follow the id shapes every service accepts, so most mistakes are answered
here with a 422 before any service is called."""

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from orderflow_contracts.identifiers import CUSTOMER_ID_PATTERN, MAX_ORDER_LINES, MAX_QUANTITY, SKU_PATTERN

CustomerId = Annotated[str, Field(pattern=CUSTOMER_ID_PATTERN, examples=["customer-42"])]
Sku = Annotated[str, Field(pattern=SKU_PATTERN, examples=["SKU-1"])]


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class OrderItemIn(_Request):
    sku: Sku
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class CreateOrderIn(_Request):
    customer_id: CustomerId | None = Field(
        default=None, description="The token's customer (its sub) when left out; naming another is a 403."
    )
    items: list[OrderItemIn] = Field(
        min_length=1, max_length=MAX_ORDER_LINES, description="One line per SKU: a SKU on two lines is a 422."
    )

    @field_validator("items")
    @classmethod
    def _one_line_per_sku(cls, items: list[OrderItemIn]) -> list[OrderItemIn]:
        """The services refuse a repeated SKU; refusing it here keeps it a 422, like every schema mistake."""
        seen: set[str] = set()
        for item in items:
            if item.sku in seen:
                raise PydanticCustomError(
                    "duplicate_sku",
                    "SKU {sku} appears on more than one line; order it once with the total quantity",
                    {"sku": item.sku},
                )
            seen.add(item.sku)
        return items


class OrderLineOut(BaseModel):
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


class ProductOut(BaseModel):
    sku: str
    name: str
    price_cents: int
    currency: str
    available: int = Field(description="Stock that can still be ordered.")


class ProductList(BaseModel):
    products: list[ProductOut]


class LoyaltyBalanceOut(BaseModel):
    customer_id: str
    points: int
    orders_awarded: int


class Alive(BaseModel):
    status: str = Field(examples=["alive"])


class Ready(BaseModel):
    status: str = Field(examples=["ready"])
    checks: dict[str, str] = Field(examples=[{"orders": "ok", "inventory": "ok", "loyalty": "ok", "redis": "ok"}])
