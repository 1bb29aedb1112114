"""The request body rules: strict types, no unknown fields, the shared id shapes."""

import functools
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from gateway import restock
from gateway.openapi_document import openapi_document
from gateway.schemas import MAX_RESTOCK_REQUEST_LINES, CreateOrderIn, RestockIn
from orderflow_contracts.identifiers import (
    MAX_ORDER_LINES,
    MAX_PRICE_CENTS,
    MAX_PRODUCT_NAME_LENGTH,
    MAX_QUANTITY,
    MAX_RESTOCK_UNITS,
)


def order(**changes: Any) -> dict[str, Any]:
    return {"customer_id": "customer-1", "items": [{"sku": "SKU-1", "quantity": 1}], **changes}


def item(**changes: Any) -> dict[str, Any]:
    return order(items=[{"sku": "SKU-1", "quantity": 1, **changes}])


def test_a_number_without_a_fraction_part_is_an_integer_as_json_schema_says() -> None:
    body = CreateOrderIn.model_validate(item(quantity=2.0))
    restock = RestockIn.model_validate({"lines": [{"sku": "S", "quantity": 3.0, "name": "Mug", "price_cents": 5.0}]})

    assert (body.items[0].quantity, restock.lines[0].quantity, restock.lines[0].price_cents) == (2, 3, 5)
    assert type(body.items[0].quantity) is int


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
        (item(quantity=1.5), "int_type"),
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
        ({"lines": [{"sku": "SKU-1", "quantity": 1}] * (MAX_RESTOCK_REQUEST_LINES + 1)}, "too_long"),
    ],
)
def test_a_malformed_restock_is_rejected(body: dict[str, Any], mistake: str) -> None:
    with pytest.raises(ValidationError) as rejected:
        RestockIn.model_validate(body)

    assert [error["type"] for error in rejected.value.errors()] == [mistake]


# The largest line the schema allows, sent as json.dumps sends it (non-ASCII as \\u escapes: a
# character outside the BMP is 12 bytes).
LARGEST_LINE = {
    "sku": "S" * 64,
    "quantity": MAX_RESTOCK_UNITS,
    "name": "\U0001f600" * 200,
    "price_cents": MAX_PRICE_CENTS,
}


def test_every_restock_the_schema_allows_fits_in_the_restock_body_limit() -> None:
    largest = {"lines": [LARGEST_LINE] * MAX_RESTOCK_REQUEST_LINES}

    RestockIn.model_validate(largest)
    assert len(json.dumps(largest).encode()) < restock.MAX_BODY_BYTES


def ecma_anchors(schema: Any) -> Any:
    """The schema with each pattern's final `$` as ECMA-262 reads it, the end of the text: Python's
    re (which jsonschema uses) also lets `$` match before a final newline."""
    if isinstance(schema, dict):
        return {
            key: value[:-1] + r"\Z" if key == "pattern" and value.endswith("$") else ecma_anchors(value)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [ecma_anchors(value) for value in schema]
    return schema


@functools.cache
def restock_line_validator() -> Draft202012Validator:
    document = ecma_anchors(openapi_document())
    return Draft202012Validator(
        {**document["components"]["schemas"]["RestockLineIn"], "components": document["components"]}
    )


def document_says_valid(line: dict[str, Any]) -> bool:
    """What the OpenAPI document's schema of a restock line says, as a JSON Schema validator reads it."""
    return bool(restock_line_validator().is_valid(line))


RESTOCK_LINES = {
    "plain": {"sku": "SKU-1", "quantity": 1},
    "new product": {"sku": "SKU-1", "quantity": 1, "name": "Mug \u00e9\U0001f600", "price_cents": 0},
    "both null": {"sku": "SKU-1", "quantity": 1, "name": None, "price_cents": None},
    "largest": LARGEST_LINE,
    "name alone": {"sku": "SKU-1", "quantity": 1, "name": "Mug"},
    "price alone": {"sku": "SKU-1", "quantity": 1, "price_cents": 100},
    "name, null price": {"sku": "SKU-1", "quantity": 1, "name": "Mug", "price_cents": None},
    "null name, price": {"sku": "SKU-1", "quantity": 1, "name": None, "price_cents": 1},
    "newline": {"sku": "SKU-1", "quantity": 1, "name": "Mug\n", "price_cents": 1},
    "right-to-left override": {"sku": "SKU-1", "quantity": 1, "name": "Mug\u202e", "price_cents": 1},
    "no-break space": {"sku": "SKU-1", "quantity": 1, "name": "Big\u00a0mug", "price_cents": 1},
    "private use": {"sku": "SKU-1", "quantity": 1, "name": "\ue000", "price_cents": 1},
    "negative price": {"sku": "SKU-1", "quantity": 1, "name": "Mug", "price_cents": -1},
    "price 2.0": {"sku": "SKU-1", "quantity": 1, "name": "Mug", "price_cents": 2.0},
    "quantity 2.5": {"sku": "SKU-1", "quantity": 2.5},
    "price as text": {"sku": "SKU-1", "quantity": 1, "name": "Mug", "price_cents": "1"},
}


@pytest.mark.parametrize("line", RESTOCK_LINES.values(), ids=RESTOCK_LINES.keys())
def test_the_document_states_the_rules_a_restock_line_is_held_to(line: dict[str, Any]) -> None:
    try:
        RestockIn.model_validate({"lines": [line]})
    except ValidationError:
        accepted = False
    else:
        accepted = True

    assert document_says_valid(line) == accepted
