"""The request body rules: strict types, no unknown fields, the shared id shapes."""

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.schemas import CreateOrderIn, RestockIn
from orderflow_contracts.identifiers import (
    MAX_ORDER_LINES,
    MAX_PRODUCT_NAME_LENGTH,
    MAX_QUANTITY,
    MAX_RESTOCK_LINES,
    MAX_RESTOCK_UNITS,
)


def order(**changes: Any) -> dict[str, Any]:
    return {"customer_id": "customer-1", "items": [{"sku": "SKU-1", "quantity": 1}], **changes}


def item(**changes: Any) -> dict[str, Any]:
    return order(items=[{"sku": "SKU-1", "quantity": 1, **changes}])


def test_a_well_formed_order_is_accepted() -> None:
    body = CreateOrderIn.model_validate(order(items=[{"sku": "SKU-1", "quantity": MAX_QUANTITY}]))

    assert body.items[0].quantity == MAX_QUANTITY


def test_the_customer_may_be_left_out_for_the_token_to_name() -> None:
    body = CreateOrderIn.model_validate({"items": [{"sku": "SKU-1", "quantity": 1}]})

    assert body.customer_id is None


@pytest.mark.parametrize(
    ("body", "mistake"),
    [
        (item(quantity="1"), "int_type"),
        (item(quantity=1.0), "int_type"),
        (item(quantity=True), "int_type"),
        (item(quantity=0), "greater_than_equal"),
        (item(quantity=-1), "greater_than_equal"),
        (item(quantity=MAX_QUANTITY + 1), "less_than_equal"),
        (item(sku="sku-lower"), "string_pattern_mismatch"),
        (item(colour="red"), "extra_forbidden"),
        (order(customer_id=""), "string_pattern_mismatch"),
        (order(customer_id="has space"), "string_pattern_mismatch"),
        (order(items=[]), "too_short"),
        (order(items=[{"sku": "SKU-1", "quantity": 1}] * (MAX_ORDER_LINES + 1)), "too_long"),
        (order(coupon="FREE"), "extra_forbidden"),
        ({"customer_id": "customer-1"}, "missing"),
    ],
)
def test_a_malformed_order_is_rejected(body: dict[str, Any], mistake: str) -> None:
    with pytest.raises(ValidationError) as rejected:
        CreateOrderIn.model_validate(body)

    assert [error["type"] for error in rejected.value.errors()] == [mistake]


def restock_line(**changes: Any) -> dict[str, Any]:
    return {"lines": [{"sku": "SKU-1", "quantity": 1, **changes}]}


def test_a_restock_may_repeat_a_sku_and_name_a_new_product() -> None:
    body = RestockIn.model_validate(
        {
            "lines": [
                {"sku": "SKU-1", "quantity": MAX_RESTOCK_UNITS},
                {"sku": "SKU-1", "quantity": 1},
                {"sku": "MUG-RED", "quantity": 1, "name": "Red enamel mug", "price_cents": 0},
            ]
        }
    )

    assert [line.sku for line in body.lines] == ["SKU-1", "SKU-1", "MUG-RED"]


@pytest.mark.parametrize(
    ("body", "mistake"),
    [
        (restock_line(quantity=0), "greater_than_equal"),
        (restock_line(quantity=MAX_RESTOCK_UNITS + 1), "less_than_equal"),
        (restock_line(quantity="1"), "int_type"),
        (restock_line(name="Mug"), "name_without_price"),
        (restock_line(price_cents=100), "name_without_price"),
        (restock_line(name="Mug\n", price_cents=100), "not_printable"),
        (restock_line(name="", price_cents=100), "string_too_short"),
        (restock_line(name="M" * (MAX_PRODUCT_NAME_LENGTH + 1), price_cents=100), "string_too_long"),
        (restock_line(name="Mug", price_cents=-1), "greater_than_equal"),
        (restock_line(colour="red"), "extra_forbidden"),
        ({"lines": []}, "too_short"),
        ({"lines": [{"sku": "SKU-1", "quantity": 1}] * (MAX_RESTOCK_LINES + 1)}, "too_long"),
    ],
)
def test_a_malformed_restock_is_rejected(body: dict[str, Any], mistake: str) -> None:
    with pytest.raises(ValidationError) as rejected:
        RestockIn.model_validate(body)

    assert [error["type"] for error in rejected.value.errors()] == [mistake]
