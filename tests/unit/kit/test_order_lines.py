"""One rule for an order's lines (orderflow_kit.order_lines): orders and inventory refuse the same
lines with the same words, naming the same field."""

import pytest

from inventory.reservations import StockLine, reserve_stock
from orderflow_contracts.identifiers import MAX_ORDER_LINES, MAX_SKU_QUANTITY
from orderflow_kit.db import create_engine
from orderflow_kit.errors import ErrorKind, ServiceError
from orderflow_kit.order_lines import check_order_lines
from orders.placing_orders import RequestedItem, validated_order

MALFORMED: dict[str, tuple[list[tuple[str, int]], str, str]] = {
    "no lines": ([], "items", "items must hold at least one line"),
    "too many lines": (
        [(f"SKU-{n}", 1) for n in range(MAX_ORDER_LINES + 1)],
        "items",
        f"items holds {MAX_ORDER_LINES + 1} lines, at most {MAX_ORDER_LINES} are allowed",
    ),
    "not a sku": ([("MUG-001", 1), ("mug 2", 1)], "items[1].sku", "items[1].sku 'mug 2' is not a SKU"),
    "sku listed twice": (
        [("MUG-001", 1), ("MUG-001", 2)],
        "items[1].sku",
        "items[1].sku MUG-001 is listed twice; put its whole quantity on one line",
    ),
    "zero quantity": (
        [("MUG-001", 0)],
        "items[0].quantity",
        f"items[0].quantity must be between 1 and {MAX_SKU_QUANTITY}",
    ),
}


@pytest.mark.parametrize(("lines", "field", "detail"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_line_breaking_the_rule_is_validation_failed_naming_the_field(
    lines: list[tuple[str, int]], field: str, detail: str
) -> None:
    with pytest.raises(ServiceError) as refused:
        check_order_lines([StockLine(sku, quantity) for sku, quantity in lines])

    assert (refused.value.kind, refused.value.code, refused.value.metadata) == (
        ErrorKind.INVALID_ARGUMENT,
        "VALIDATION_FAILED",
        {"field": field},
    )
    assert refused.value.detail.startswith(detail)


@pytest.mark.parametrize(("lines", "field", "detail"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_orders_and_inventory_refuse_the_same_lines_in_the_same_words(
    lines: list[tuple[str, int]], field: str, detail: str
) -> None:
    with pytest.raises(ServiceError) as by_orders:
        validated_order("cust-1", [RequestedItem(sku, quantity) for sku, quantity in lines])
    engine = create_engine("postgresql://nobody@127.0.0.1:9/postgres", "inventory")  # refused before any query
    try:
        with pytest.raises(ServiceError) as by_inventory:
            await reserve_stock(engine, "8a66162e-1e82-4fb5-b316-66be80649f59", [StockLine(s, q) for s, q in lines])
    finally:
        await engine.dispose()

    assert (by_orders.value.detail, by_orders.value.metadata) == (
        by_inventory.value.detail,
        by_inventory.value.metadata,
    )
