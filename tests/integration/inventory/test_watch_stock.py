"""WatchStock against real inventory servers and PostgreSQL: the current levels then each change,
across replicas (a reservation through one reaches a watcher on the other), a slow watcher that
gets the latest level with its pending levels bounded, a client that cancels, a lost LISTEN
connection, and a server that stops while streams are open."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.settings import InventorySettings
from inventory.stock_watch import LISTENER_APPLICATION_NAME
from orderflow_contracts.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from orderflow_devstack.infra import free_port
from orderflow_kit.grpc_client import channel
from tests.integration.inventory.helpers import add_product, available, restock
from tests.support.databases import scalar
from tests.support.jetstream import delete_consumer, new_consumer_name
from tests.support.polling import eventually
from tests.support.rpc_errors import rpc_error
from tests.support.services import serving_inventory

WITHIN = 20.0

# A client that asks for little at a time: no BDP probing (which grows the window as data flows)
# and a 1 KiB stream window, so a watcher that stops reading fills it after a few dozen responses.
SLOW_CLIENT_OPTIONS = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)]


# What a streaming call's read() gives at the end of the stream (grpc-stubs does not declare it).
END_OF_STREAM: Any = grpc.aio.EOF  # type: ignore[attr-defined]
TAKE_ONE_UNIT = text("UPDATE products SET available = available - 1, received = received - 1 WHERE sku = :sku")


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def watch(stub: Any, *skus: str) -> Any:
    return stub.WatchStock(inventory_pb2.WatchStockRequest(skus=list(skus)))


async def next_levels(call: Any) -> dict[str, int]:
    async with asyncio.timeout(WITHIN):
        response = await call.read()
    assert response is not END_OF_STREAM, "the stream ended"
    return {level.sku: level.available for level in response.levels}


async def watching(stub: Any, sku: str, stock: int) -> Any:
    """A watch of `sku` that has sent its first levels, `stock` units."""
    call = watch(stub, sku)
    assert await next_levels(call) == {sku: stock}
    return call


async def levels_until(call: Any, sku: str, level: int) -> list[dict[str, int]]:
    """Responses up to the first that gives `sku` at `level`."""
    seen = []
    while True:
        seen.append(await next_levels(call))
        if seen[-1].get(sku) == level:
            return seen


async def reserve(stub: Any, sku: str, quantity: int) -> None:
    await stub.ReserveStock(
        inventory_pb2.ReserveStockRequest(
            order_id=str(uuid.uuid4()), items=[inventory_pb2.StockLine(sku=sku, quantity=quantity)]
        )
    )


@pytest.fixture
async def replica(settings: InventorySettings, inventory_address: str) -> AsyncIterator[Any]:
    """A second inventory replica on the same database (the first is `inventory`)."""
    other = settings.model_copy(
        update={
            "inventory_port": free_port(),
            "order_events": settings.order_events.model_copy(update={"consumer": new_consumer_name("inventory")}),
        }
    )
    async with serving_inventory(other) as address, channel(address) as connection:
        yield inventory_pb2_grpc.InventoryServiceStub(connection)
    await delete_consumer(other.nats_url, other.order_events.consumer)


async def test_a_watcher_gets_the_current_levels_then_each_change(inventory: Any, engine: AsyncEngine) -> None:
    mugs, tees = await add_product(engine, stock=10), await add_product(engine, stock=5)
    call = watch(inventory, mugs, tees)

    assert await next_levels(call) == {mugs: 10, tees: 5}
    await reserve(inventory, mugs, 3)
    assert await levels_until(call, mugs, 7) == [{mugs: 7}]
    await restock(engine, tees, 4)  # any statement that changes the stock, not only the service's
    assert await levels_until(call, tees, 9) == [{tees: 9}]
    call.cancel()


async def test_a_reservation_through_one_replica_reaches_a_watcher_on_the_other(
    inventory: Any, replica: Any, engine: AsyncEngine
) -> None:
    sku = await add_product(engine, stock=20)
    on_the_other = await watching(replica, sku, 20)

    await reserve(inventory, sku, 6)

    await levels_until(on_the_other, sku, 14)
    on_the_other.cancel()


async def test_watching_every_sku_includes_a_product_added_later(inventory: Any, engine: AsyncEngine) -> None:
    known = await add_product(engine, stock=3)
    call = watch(inventory)
    first = await next_levels(call)
    assert first[known] == 3

    added = await add_product(engine, stock=8)

    await levels_until(call, added, 8)
    call.cancel()


async def test_unknown_and_malformed_skus_are_refused_before_any_level(inventory: Any, engine: AsyncEngine) -> None:
    sku = await add_product(engine, stock=1)

    unknown = await rpc_error(watch(inventory, sku, "NO-SUCH-SKU").read())
    malformed = await rpc_error(watch(inventory, "not a sku").read())
    too_many = await rpc_error(watch(inventory, *[f"SKU-{number}" for number in range(1001)]).read())

    assert (unknown.code, unknown.detail.code, unknown.detail.metadata["skus"]) == (
        grpc.StatusCode.NOT_FOUND,
        "UNKNOWN_SKU",
        "NO-SUCH-SKU",
    )
    assert (malformed.code, malformed.detail.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "skus[0]")
    assert (too_many.code, too_many.detail.metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "skus")


async def test_a_slow_watcher_gets_the_latest_level_and_holds_one_pending_level_per_sku(
    inventory_address: str, engine: AsyncEngine
) -> None:
    sku = await add_product(engine, stock=1000)
    changes = 300
    async with grpc.aio.insecure_channel(inventory_address, options=SLOW_CLIENT_OPTIONS) as slow_connection:
        slow = await watching(inventory_pb2_grpc.InventoryServiceStub(slow_connection), sku, 1000)
        coalesced_before = metric("orderflow_inventory_stock_levels_coalesced_total")

        # The watcher reads nothing while the stock changes one unit at a time, each its own commit.
        async with engine.connect() as connection:
            autocommitting = await connection.execution_options(isolation_level="AUTOCOMMIT")
            for _ in range(changes):
                await autocommitting.execute(TAKE_ONE_UNIT, {"sku": sku})
        final = 1000 - changes
        # Once its window is full the stream waits, and the levels it cannot send replace each other.
        await eventually(
            lambda: metric("orderflow_inventory_stock_levels_coalesced_total") - coalesced_before,
            lambda coalesced: coalesced >= changes / 2,
            what="levels coalesced for the slow watcher",
        )

        received = await levels_until(slow, sku, final)
        slow.cancel()

    assert len(received) < changes / 2  # not every step: the latest level, after what the window held
    assert [levels[sku] for levels in received] == sorted((levels[sku] for levels in received), reverse=True)
    assert await available(engine, sku) == final


async def test_a_client_that_cancels_leaves_no_watcher_behind(inventory: Any, engine: AsyncEngine) -> None:
    sku = await add_product(engine, stock=4)
    open_before = metric("orderflow_inventory_stock_watchers")
    call = watch(inventory, sku)
    await next_levels(call)
    assert metric("orderflow_inventory_stock_watchers") == open_before + 1

    call.cancel()

    await eventually(lambda: metric("orderflow_inventory_stock_watchers"), lambda now: now == open_before)
    await reserve(inventory, sku, 1)  # a change with no watcher left to take it
    assert await available(engine, sku) == 3


async def test_after_the_listen_connection_is_lost_watchers_get_the_levels_again_and_later_changes(
    inventory: Any, engine: AsyncEngine, database: str
) -> None:
    sku = await add_product(engine, stock=9)
    call = await watching(inventory, sku, 9)
    opened = metric("orderflow_inventory_stock_listener_connections_total")

    terminated = await scalar(
        engine,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name = :name AND datname = :database",
        name=LISTENER_APPLICATION_NAME,
        database=database,
    )
    assert terminated == 1

    # Notifications sent while nobody listens are lost: the levels are sent again once it listens.
    assert await next_levels(call) == {sku: 9}
    assert metric("orderflow_inventory_stock_listener_connections_total") > opened
    await reserve(inventory, sku, 2)
    await levels_until(call, sku, 7)
    call.cancel()


async def test_stopping_the_server_ends_open_watches_at_once(settings: InventorySettings, engine: AsyncEngine) -> None:
    """The grace is long: a watch left open would hold the stop for all of it."""
    sku = await add_product(engine, stock=2)
    patient = settings.model_copy(update={"shutdown_grace_seconds": 600.0})
    server = serving_inventory(patient)
    address = await server.__aenter__()
    async with channel(address) as connection:
        call = await watching(inventory_pb2_grpc.InventoryServiceStub(connection), sku, 2)

        async with asyncio.timeout(WITHIN):  # far within the grace
            await server.__aexit__(None, None, None)

        assert await call.read() is END_OF_STREAM
        assert await call.code() == grpc.StatusCode.OK
