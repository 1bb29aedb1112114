"""A malformed CreateOrder is refused with VALIDATION_FAILED naming the field, before any call."""

import pytest

from orderflow_contracts.identifiers import MAX_ORDER_LINES, MAX_SKU_QUANTITY
from orderflow_kit.errors import ErrorKind, ServiceError
from orders.placing_orders import RequestedItem, validated_client_request_id, validated_order

MUG = RequestedItem("MUG-001", 1)

MALFORMED: dict[str, tuple[str, str, list[RequestedItem]]] = {
    "empty customer id": ("customer_id", "", [MUG]),
    "customer id with a space": ("customer_id", "cust 1", [MUG]),
    "customer id too long": ("customer_id", "c" * 65, [MUG]),
    "no items": ("items", "cust-1", []),
    "too many lines": ("items", "cust-1", [RequestedItem(f"SKU-{n}", 1) for n in range(MAX_ORDER_LINES + 1)]),
    "zero quantity": ("items[0].quantity", "cust-1", [RequestedItem("MUG-001", 0)]),
    "negative quantity": ("items[0].quantity", "cust-1", [RequestedItem("MUG-001", -3)]),
    "quantity too large": ("items[1].quantity", "cust-1", [MUG, RequestedItem("TEE-1", MAX_SKU_QUANTITY + 1)]),
    "lower-case sku": ("items[1].sku", "cust-1", [MUG, RequestedItem("mug-001", 1)]),
    "empty sku": ("items[0].sku", "cust-1", [RequestedItem("", 1)]),
    "sku listed twice": ("items[2].sku", "cust-1", [MUG, RequestedItem("TEE-1", 1), RequestedItem("MUG-001", 2)]),
}


@pytest.mark.parametrize(("field", "customer_id", "items"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_order_is_validation_failed_naming_the_field(
    field: str, customer_id: str, items: list[RequestedItem]
) -> None:
    with pytest.raises(ServiceError) as refused:
        validated_order(customer_id, items)

    assert (refused.value.kind, refused.value.code, refused.value.metadata) == (
        ErrorKind.INVALID_ARGUMENT,
        "VALIDATION_FAILED",
        {"field": field},
    )
    assert refused.value.detail.startswith(field)


def test_a_valid_order_gives_the_quantity_per_sku_in_request_order() -> None:
    items = [RequestedItem("TEE-1", 2), MUG, RequestedItem("LAMP-DESK", MAX_SKU_QUANTITY)]

    assert list(validated_order("cust-1", items).items()) == [
        ("TEE-1", 2),
        ("MUG-001", 1),
        ("LAMP-DESK", MAX_SKU_QUANTITY),
    ]


def test_the_largest_order_is_valid() -> None:
    items = [RequestedItem(f"SKU-{n}", MAX_SKU_QUANTITY) for n in range(MAX_ORDER_LINES)]

    assert len(validated_order("c" * 64, items)) == MAX_ORDER_LINES


@pytest.mark.parametrize(
    "client_request_id",
    ["", " ", "key with space", "key\n", "\x00", "caf\u00e9", "\u200bkey", "k" * 129],
    ids=["empty", "space", "inner space", "newline", "NUL", "non-ASCII", "zero-width", "too long"],
)
def test_a_malformed_client_request_id_is_validation_failed(client_request_id: str) -> None:
    with pytest.raises(ServiceError) as refused:
        validated_client_request_id(client_request_id)

    assert (refused.value.kind, refused.value.metadata) == (ErrorKind.INVALID_ARGUMENT, {"field": "client_request_id"})


@pytest.mark.parametrize("client_request_id", ["k", "k" * 128, "8a66162e-1e82-4fb5-b316-66be80649f59", "!~{}:/=+"])
def test_printable_ascii_client_request_ids_up_to_128_characters_are_valid(client_request_id: str) -> None:
    assert validated_client_request_id(client_request_id) == client_request_id
