"""The request body rules: strict types, no unknown fields, the shared id shapes."""

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.schemas import CreateOrderIn
from orderflow_contracts.identifiers import MAX_ORDER_LINES, MAX_QUANTITY


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
