"""RestockStream against the real service and PostgreSQL: a whole stream is applied in one
transaction, or nothing is written; every unit counts as received, so stock stays conserved."""

import uuid
from typing import Any

import grpc
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.restocking import MAX_STOCK
from orderflow_contracts.identifiers import MAX_PRICE_CENTS, MAX_RESTOCK_LINES, MAX_RESTOCK_UNITS
from orderflow_contracts.inventory.v1 import inventory_pb2
from orderflow_kit.grpc_client import ErrorDetail
from tests.integration.inventory.helpers import add_product, stock_of
from tests.support.databases import scalar
from tests.support.rpc_errors import rpc_error


def line(
    sku: str, quantity: int, name: str | None = None, price_cents: int | None = None
) -> inventory_pb2.RestockRequest:
    return inventory_pb2.RestockRequest(sku=sku, quantity=quantity, name=name, price_cents=price_cents)


def new_sku() -> str:
    return f"NEW-{uuid.uuid4().hex[:10].upper()}"


async def counts(engine: AsyncEngine, *skus: str) -> dict[str, tuple[int, int]]:
    """(available, received) of each SKU that is in the catalog."""
    return {sku: (count.available, count.received) for sku, count in (await stock_of(engine, *skus)).items()}


async def test_a_stream_of_many_skus_is_applied_whole_and_keeps_stock_conserved(
    inventory: Any, engine: AsyncEngine
) -> None:
    skus = [await add_product(engine, stock=10) for _ in range(40)]
    # Something held for an order: the restock must not disturb the reserved units.
    await inventory.ReserveStock(
        inventory_pb2.ReserveStockRequest(
            order_id=str(uuid.uuid4()), items=[inventory_pb2.StockLine(sku=skus[0], quantity=4)]
        )
    )
    stream = [line(sku, index + 1) for index, sku in enumerate(skus)] + [line(skus[0], 100), line(skus[1], 5)]

    summary = await inventory.RestockStream(iter(stream), timeout=10)

    assert summary.messages == 42
    added = {sku: index + 1 for index, sku in enumerate(skus)}
    added[skus[0]] += 100
    added[skus[1]] += 5
    assert [(product.sku, product.units_added, product.added_to_catalog) for product in summary.products] == [
        (sku, added[sku], False) for sku in sorted(skus)
    ]
    after = await stock_of(engine, *skus)
    assert {product.sku: product.available for product in summary.products} == {
        sku: count.available for sku, count in after.items()
    }
    assert after[skus[0]].available == 10 - 4 + added[skus[0]]
    assert all(after[sku].received == 10 + added[sku] for sku in skus)
    assert all(count.conserved for count in after.values())


async def test_a_named_and_priced_sku_joins_the_catalog_and_can_be_reserved(
    inventory: Any, engine: AsyncEngine
) -> None:
    sku = new_sku()

    summary = await inventory.RestockStream(
        iter([line(sku, 7, name="Teapot \u2615", price_cents=2450), line(sku, 3)]), timeout=10
    )
    product = await inventory.GetProduct(inventory_pb2.GetProductRequest(sku=sku))
    reservation = await inventory.ReserveStock(
        inventory_pb2.ReserveStockRequest(
            order_id=str(uuid.uuid4()), items=[inventory_pb2.StockLine(sku=sku, quantity=2)]
        )
    )

    assert [(p.sku, p.units_added, p.available, p.added_to_catalog) for p in summary.products] == [(sku, 10, 10, True)]
    assert (product.name, product.price_cents, product.available) == ("Teapot \u2615", 2450, 10)
    assert reservation.lines[0].unit_price_cents == 2450
    assert all(count.conserved for count in (await stock_of(engine, sku)).values())


async def test_an_invalid_line_late_in_the_stream_writes_nothing(inventory: Any, engine: AsyncEngine) -> None:
    skus = [await add_product(engine, stock=10) for _ in range(5)]
    newcomer = new_sku()
    stream = [
        *(line(sku, 3) for sku in skus),
        line(newcomer, 4, name="Newcomer", price_cents=100),
        line(skus[2], 0),
        line(skus[3], 3),
    ]

    refused = await rpc_error(inventory.RestockStream(iter(stream), timeout=10))

    assert (refused.code, refused.detail) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ErrorDetail("VALIDATION_FAILED", {"field": "lines[6].quantity"}),
    )
    assert await counts(engine, *skus, newcomer) == {sku: (10, 10) for sku in skus}


async def test_unknown_skus_are_not_found_naming_them_and_nothing_is_written(
    inventory: Any, engine: AsyncEngine
) -> None:
    known = await add_product(engine, stock=10)
    newcomer, unknown_a, unknown_b = new_sku(), "ZZ-UNKNOWN-2", "ZZ-UNKNOWN-1"

    refused = await rpc_error(
        inventory.RestockStream(
            iter([line(unknown_a, 1), line(known, 5), line(newcomer, 1, "Newcomer", 100), line(unknown_b, 2)]),
            timeout=10,
        )
    )

    assert (refused.code, refused.detail) == (
        grpc.StatusCode.NOT_FOUND,
        ErrorDetail("UNKNOWN_SKU", {"skus": f"{unknown_b},{unknown_a}"}),
    )
    assert "nothing was restocked" in refused.message
    assert await counts(engine, known, newcomer) == {known: (10, 10)}


async def test_another_name_or_price_for_a_catalog_sku_is_refused_and_nothing_is_written(
    inventory: Any, engine: AsyncEngine
) -> None:
    sku = await add_product(engine, stock=10, price_cents=1000)
    other = await add_product(engine, stock=10)

    refused = await rpc_error(
        inventory.RestockStream(iter([line(other, 2), line(sku, 5, name=f"Test product {sku}", price_cents=999)]))
    )
    same = await inventory.RestockStream(iter([line(sku, 5, name=f"Test product {sku}", price_cents=1000)]))

    assert (refused.code, refused.detail) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        ErrorDetail("PRODUCT_MISMATCH", {"skus": sku}),
    )
    assert [(p.units_added, p.available, p.added_to_catalog) for p in same.products] == [(5, 15, False)]
    assert await counts(engine, sku, other) == {sku: (15, 15), other: (10, 10)}


async def test_lines_that_name_one_new_sku_otherwise_are_a_product_mismatch_and_nothing_is_written(
    inventory: Any, engine: AsyncEngine
) -> None:
    """Each line is valid alone (so no request schema refuses them): a conflict, as with the catalog."""
    other = await add_product(engine, stock=10)
    new = f"NEW-{other}"

    refused = await rpc_error(
        inventory.RestockStream(
            iter([line(other, 2), line(new, 1, name="Mug", price_cents=100), line(new, 1, name="Cup", price_cents=100)])
        )
    )

    assert (refused.code, refused.detail) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        ErrorDetail("PRODUCT_MISMATCH", {"skus": new}),
    )
    assert await counts(engine, new, other) == {other: (10, 10)}


async def test_stock_beyond_the_column_limit_is_refused_and_nothing_is_written(
    inventory: Any, engine: AsyncEngine
) -> None:
    sku = await add_product(engine, stock=MAX_STOCK - MAX_RESTOCK_UNITS)
    other = await add_product(engine, stock=10)

    refused = await rpc_error(
        inventory.RestockStream(iter([line(other, 1), line(sku, MAX_RESTOCK_UNITS), line(sku, 1)]))
    )

    assert (refused.code, refused.detail) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        ErrorDetail("STOCK_LIMIT", {"skus": sku}),
    )
    assert await counts(engine, sku, other) == {
        sku: (MAX_STOCK - MAX_RESTOCK_UNITS, MAX_STOCK - MAX_RESTOCK_UNITS),
        other: (10, 10),
    }


MALFORMED = {
    "no lines": ("lines", []),
    "malformed sku": ("lines[1].sku", [line("OK-1", 1), line("not a sku", 1)]),
    "negative quantity": ("lines[0].quantity", [line("OK-1", -5)]),
    "quantity too large": ("lines[0].quantity", [line("OK-1", MAX_RESTOCK_UNITS + 1)]),
    "name without price": ("lines[0].name", [line("OK-1", 1, name="Mug")]),
    "price without name": ("lines[0].name", [line("OK-1", 1, price_cents=100)]),
    "empty name": ("lines[0].name", [line("OK-1", 1, name="", price_cents=100)]),
    "name with a NUL": ("lines[0].name", [line("OK-1", 1, name="Mug\x00", price_cents=100)]),
    "name too long": ("lines[0].name", [line("OK-1", 1, name="M" * 201, price_cents=100)]),
    "negative price": ("lines[0].price_cents", [line("OK-1", 1, name="Mug", price_cents=-1)]),
    "price past what JSON holds exactly": (
        "lines[0].price_cents",
        [line("OK-1", 1, name="Mug", price_cents=MAX_PRICE_CENTS + 1)],
    ),
}


@pytest.mark.parametrize(("field", "stream"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_stream_is_invalid_argument_naming_the_field(
    inventory: Any, field: str, stream: list[inventory_pb2.RestockRequest]
) -> None:
    refused = await rpc_error(inventory.RestockStream(iter(stream)))

    assert (refused.code, refused.detail) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ErrorDetail("VALIDATION_FAILED", {"field": field}),
    )
    assert refused.message.startswith(field)


async def test_a_stream_longer_than_the_limit_is_refused_and_nothing_is_written(
    inventory: Any, engine: AsyncEngine
) -> None:
    sku = await add_product(engine, stock=10)

    refused = await rpc_error(inventory.RestockStream((line(sku, 1) for _ in range(MAX_RESTOCK_LINES + 1)), timeout=30))

    assert (refused.code, refused.detail) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        ErrorDetail("VALIDATION_FAILED", {"field": "lines"}),
    )
    assert await scalar(engine, "SELECT received FROM products WHERE sku = :sku", sku=sku) == 10


@pytest.mark.parametrize("bad_line", [0, MAX_RESTOCK_LINES // 2], ids=["first", "middle"])
async def test_a_stream_refused_while_the_client_still_sends_is_answered_with_the_refusal(
    inventory: Any, bad_line: int
) -> None:
    """The refusal comes after the service has read what the client sends: grpc-python's client
    would otherwise report a refusal that overtakes its writes as INTERNAL. Repeated: it is a race."""
    sku = new_sku()
    stream = [line(sku, 1) for _ in range(MAX_RESTOCK_LINES + 20)]
    stream[bad_line] = line("not a sku!", 1)
    for _ in range(5):
        refused = await rpc_error(inventory.RestockStream(iter(stream), timeout=30))

        assert refused.code == grpc.StatusCode.INVALID_ARGUMENT, refused.message
