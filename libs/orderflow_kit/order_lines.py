"""The rule for an order's lines, one for every service that takes them (orders' CreateOrder and
PlaceOrders, inventory's ReserveStock), so that both refuse the same request in the same words:
one line at least and MAX_ORDER_LINES at most, each a SKU (SKU_PATTERN) on one line only, with a
quantity from 1 to MAX_SKU_QUANTITY. A refusal is INVALID_ARGUMENT (VALIDATION_FAILED) naming the
field: `items`, `items[2].sku`, `items[2].quantity`."""

from collections.abc import Sequence
from typing import Protocol

from orderflow_contracts.identifiers import MAX_ORDER_LINES, MAX_SKU_QUANTITY, SKU_PATTERN, is_sku
from orderflow_kit.errors import invalid_argument


class OrderLine(Protocol):
    @property
    def sku(self) -> str: ...

    @property
    def quantity(self) -> int: ...


def check_order_lines(items: Sequence[OrderLine]) -> None:
    """Raise VALIDATION_FAILED for the first line (or count) that breaks the rule."""
    if not items:
        raise invalid_argument("items must hold at least one line", field="items")
    if len(items) > MAX_ORDER_LINES:
        raise invalid_argument(f"items holds {len(items)} lines, at most {MAX_ORDER_LINES} are allowed", field="items")
    seen: set[str] = set()
    for index, line in enumerate(items):
        if not is_sku(line.sku):
            raise invalid_argument(
                f"items[{index}].sku {line.sku[:80]!r} is not a SKU (pattern {SKU_PATTERN})",
                field=f"items[{index}].sku",
            )
        if line.sku in seen:
            raise invalid_argument(
                f"items[{index}].sku {line.sku} is listed twice; put its whole quantity on one line",
                field=f"items[{index}].sku",
            )
        if not 1 <= line.quantity <= MAX_SKU_QUANTITY:
            raise invalid_argument(
                f"items[{index}].quantity must be between 1 and {MAX_SKU_QUANTITY}, got {line.quantity}",
                field=f"items[{index}].quantity",
            )
        seen.add(line.sku)
