"""The reservation lifecycle against real PostgreSQL and NATS: a reservation is confirmed by its
order's OrderCreated (once, however often it arrives), expires when never confirmed within the
TTL (its stock returned once, whatever number of sweepers run), and stock is conserved throughout."""

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import grpc
import pytest
from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.reservations import (
    Confirmation,
    NoReservation,
    StockGone,
    StockLine,
    confirm_reservation,
    confirm_reservations,
    expire_reservations,
    release_stock,
    reserve_stock,
)
from inventory.settings import InventorySettings
from inventory.stock_conservation import StockCount, unconserved_stock
from orderflow_contracts.events import ConfirmedLineV1, StockConfirmed, read_stock_confirmed
from orderflow_contracts.inventory.v1 import inventory_pb2
from orderflow_contracts.streams import STOCK_CONFIRMED_SUBJECT
from orderflow_kit.dead_letters import list_dead_letters, replay_dead_letter
from orderflow_kit.errors import ServiceError
from tests.integration.inventory.helpers import (
    add_product,
    available,
    held_since_an_hour,
    reservation_status,
    restock,
    stock_of,
)
from tests.support.events import order_created, publish
from tests.support.jetstream import acked_through, messages_on
from tests.support.polling import eventually
from tests.support.rpc_errors import rpc_error
from tests.support.services import serving_inventory

TTL = timedelta(seconds=1)


async def announcements(js: JetStreamContext, order_id: uuid.UUID) -> list[StockConfirmed]:
    """The stock_confirmed events the stream holds for one order."""
    found = await messages_on(js, STOCK_CONFIRMED_SUBJECT)
    return [
        read_stock_confirmed(message.headers, message.data or b"")
        for message in found
        if (message.headers or {}).get("ce-subject") == str(order_id)
    ]


async def test_check_stock_conservation_reads_every_products_counts(inventory: Any, engine: AsyncEngine) -> None:
    sku = await add_product(engine, stock=10)
    await reserve(inventory, {sku: 4})

    answer = await inventory.CheckStockConservation(inventory_pb2.CheckStockConservationRequest())

    assert answer.conserved
    [count] = [count for count in answer.products if count.sku == sku]
    assert (count.received, count.available, count.reserved, count.confirmed, count.conserved) == (10, 6, 4, 0, True)


async def reserve(inventory: Any, quantities: dict[str, int], order_id: uuid.UUID | None = None) -> uuid.UUID:
    """Reserve through the service for `order_id`, by default a new order; the order's id."""
    order_id = order_id or uuid.uuid4()
    items = [inventory_pb2.StockLine(sku=sku, quantity=quantity) for sku, quantity in quantities.items()]
    await inventory.ReserveStock(inventory_pb2.ReserveStockRequest(order_id=str(order_id), items=items))
    return order_id


async def expired_reservation(inventory: Any, engine: AsyncEngine, quantities: dict[str, int]) -> uuid.UUID:
    """A new order's reservation through the service, expired by the sweeper (its stock returned); its id."""
    order_id = await reserve(inventory, quantities)
    await held_since_an_hour(engine, order_id)
    assert order_id in await expire_reservations(engine, ttl=TTL, limit=1000)
    return order_id


async def test_an_order_created_event_confirms_its_reservation_once_even_when_it_arrives_twice(
    confirming: str, inventory: Any, engine: AsyncEngine, js: JetStreamContext, settings: InventorySettings
) -> None:
    sku = await add_product(engine, stock=10)
    order_id = await reserve(inventory, {sku: 3})
    event = order_created(order_id=order_id, items={sku: 3})

    await publish(js, event)
    again = (await publish(js, event, msg_id=f"{event.id}-again")).seq  # the same event, past the broker's dedupe
    await eventually(lambda: acked_through(js, settings.order_events.consumer, again))

    assert await reservation_status(engine, order_id) == "CONFIRMED"
    assert await stock_of(engine, sku) == {sku: StockCount(sku, received=10, available=7, reserved=0, confirmed=3)}
    assert await list_dead_letters(js, subject=f"dlq.{settings.order_events.consumer}.>") == []
    assert await confirm_reservation(engine, order_id) is Confirmation.DUPLICATE
    # Announced after each delivery with the same Nats-Msg-Id: the broker keeps one.
    [announced] = await announcements(js, order_id)
    assert announced.confirmation.items == [ConfirmedLineV1(sku=sku, quantity=3)]
    assert announced.confirmation.late is False


async def test_an_order_created_for_an_order_without_a_reservation_is_dead_lettered(
    confirming: str, js: JetStreamContext, settings: InventorySettings
) -> None:
    stranger = order_created(order_id=uuid.uuid4(), items={"NOT-RESERVED": 1})

    sequence = (await publish(js, stranger)).seq
    await eventually(lambda: acked_through(js, settings.order_events.consumer, sequence))

    [letter] = await list_dead_letters(js, subject=f"dlq.{settings.order_events.consumer}.>")
    assert letter.subject == f"dlq.{settings.order_events.consumer}.orders.created"
    assert (letter.event_id, letter.reason, letter.error_class) == (stranger.id, "permanent", "NoReservation")


async def test_the_sweeper_expires_an_unconfirmed_reservation_after_the_ttl_and_returns_its_stock(
    engine: AsyncEngine, settings: InventorySettings
) -> None:
    """The orders process died between reserve and commit: no OrderCreated will ever come."""
    short_ttl = settings.model_copy(update={"reservation_ttl_seconds": TTL.total_seconds()})
    sku = await add_product(engine, stock=5)
    order_id = uuid.uuid4()

    async with serving_inventory(short_ttl):
        await reserve_stock(engine, str(order_id), [StockLine(sku, 2)])
        reserved_at = asyncio.get_running_loop().time()
        await eventually(lambda: reservation_status(engine, order_id), lambda status: status == "EXPIRED")
        expired_after = asyncio.get_running_loop().time() - reserved_at

    assert expired_after >= TTL.total_seconds()
    assert await stock_of(engine, sku) == {sku: StockCount(sku, received=5, available=5, reserved=0, confirmed=0)}


async def test_two_sweepers_return_the_stock_of_each_expired_reservation_exactly_once(engine: AsyncEngine) -> None:
    sku = await add_product(engine, stock=100)
    orders = [uuid.uuid4() for _ in range(30)]
    for order_id in orders:
        await reserve_stock(engine, str(order_id), [StockLine(sku, 1)])
    await held_since_an_hour(engine, *orders)

    async def sweeper() -> list[uuid.UUID]:
        swept: list[uuid.UUID] = []
        while expired := await expire_reservations(engine, ttl=TTL, limit=4):
            swept += expired
        return swept

    first, second = await asyncio.gather(sweeper(), sweeper())

    assert sorted(first + second) == sorted(orders)  # every one expired, none twice
    assert set(first).isdisjoint(second)
    assert await stock_of(engine, sku) == {sku: StockCount(sku, received=100, available=100, reserved=0, confirmed=0)}
    assert await expire_reservations(engine, ttl=TTL, limit=100) == []


async def test_a_confirmed_reservation_never_expires(engine: AsyncEngine) -> None:
    sku = await add_product(engine, stock=5)
    order_id = uuid.uuid4()
    await reserve_stock(engine, str(order_id), [StockLine(sku, 2)])
    assert await confirm_reservation(engine, order_id) is Confirmation.CONFIRMED
    await held_since_an_hour(engine, order_id)

    assert order_id not in await expire_reservations(engine, ttl=TTL, limit=1000)
    assert await reservation_status(engine, order_id) == "CONFIRMED"
    assert await available(engine, sku) == 3


async def test_a_late_order_created_takes_the_stock_of_its_expired_reservation_again(
    confirming: str, inventory: Any, engine: AsyncEngine, js: JetStreamContext, settings: InventorySettings
) -> None:
    """The order exists (its event says so), so it gets its stock back if there is any."""
    sku = await add_product(engine, stock=5)
    order_id = await expired_reservation(inventory, engine, {sku: 2})

    sequence = (await publish(js, order_created(order_id=order_id, items={sku: 2}))).seq
    await eventually(lambda: acked_through(js, settings.order_events.consumer, sequence))

    assert await reservation_status(engine, order_id) == "CONFIRMED"
    assert await stock_of(engine, sku) == {sku: StockCount(sku, received=5, available=3, reserved=0, confirmed=2)}
    [announced] = await announcements(js, order_id)
    assert announced.confirmation.late is True


async def test_a_late_order_created_whose_stock_is_gone_is_dead_lettered_and_a_replay_after_a_restock_confirms_it(
    confirming: str, inventory: Any, engine: AsyncEngine, js: JetStreamContext, settings: InventorySettings
) -> None:
    sku = await add_product(engine, stock=2)
    late = await expired_reservation(inventory, engine, {sku: 2})
    await reserve(inventory, {sku: 2})  # the returned stock is sold to someone else

    sequence = (await publish(js, order_created(order_id=late, items={sku: 2}))).seq
    await eventually(lambda: acked_through(js, settings.order_events.consumer, sequence))

    [letter] = await list_dead_letters(js, subject=f"dlq.{settings.order_events.consumer}.>")
    assert (letter.reason, letter.error_class) == ("permanent", "StockGone")
    assert await reservation_status(engine, late) == "EXPIRED"
    assert await stock_of(engine, sku) == {sku: StockCount(sku, received=2, available=0, reserved=2, confirmed=0)}

    await restock(engine, sku, 2)
    replayed = await replay_dead_letter(js, letter.sequence)
    await eventually(lambda: acked_through(js, settings.order_events.consumer, replayed.sequence))

    assert await reservation_status(engine, late) == "CONFIRMED"
    assert await stock_of(engine, sku) == {sku: StockCount(sku, received=4, available=0, reserved=2, confirmed=2)}


async def test_releasing_a_confirmed_reservation_is_refused_and_reserving_an_expired_one_again_too(
    inventory: Any, engine: AsyncEngine
) -> None:
    sku = await add_product(engine, stock=5)
    confirmed = await reserve(inventory, {sku: 1})
    await confirm_reservation(engine, confirmed)
    expired = await expired_reservation(inventory, engine, {sku: 1})

    release = await rpc_error(inventory.ReleaseStock(inventory_pb2.ReleaseStockRequest(order_id=str(confirmed))))
    reserve_again = await rpc_error(reserve(inventory, {sku: 1}, order_id=expired))
    released_expired = await inventory.ReleaseStock(inventory_pb2.ReleaseStockRequest(order_id=str(expired)))

    assert (release.code, release.detail.code) == (grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_CONFIRMED")
    assert (reserve_again.code, reserve_again.detail.code) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "RESERVATION_EXPIRED",
    )
    assert released_expired.released is False  # its stock went back when it expired
    assert await stock_of(engine, sku) == {sku: StockCount(sku, received=5, available=4, reserved=0, confirmed=1)}


async def test_stock_is_conserved_after_a_mix_of_every_transition(engine: AsyncEngine) -> None:
    """Reserve, confirm, release, expire, confirm late, and refusals, racing where they can (repeated
    reserves too: they hold product rows while they wait on the order's reservation row)."""
    skus = [await add_product(engine, stock=20), await add_product(engine, stock=3)]
    orders = [uuid.uuid4() for _ in range(12)]
    reserved = await asyncio.gather(
        *(reserve_stock(engine, str(order_id), [StockLine(sku, 2) for sku in skus]) for order_id in orders),
        return_exceptions=True,
    )
    taken = [order_id for order_id, outcome in zip(orders, reserved, strict=True) if isinstance(outcome, list)]
    assert len(taken) == 1  # the second SKU holds 3: one order of 2
    more = [uuid.uuid4() for _ in range(6)]
    for order_id in more:
        await reserve_stock(engine, str(order_id), [StockLine(skus[0], 1)])
    to_confirm, to_release, to_expire, to_confirm_late = more[:2], more[2:3], more[3:5], more[5:]
    await held_since_an_hour(engine, *to_expire, *to_confirm_late)

    outcomes = await asyncio.gather(
        *(confirm_reservation(engine, order_id) for order_id in [*taken, *to_confirm, *to_confirm]),
        *(release_stock(engine, str(order_id)) for order_id in [*to_release, *to_release]),
        expire_reservations(engine, ttl=TTL, limit=1000),
        expire_reservations(engine, ttl=TTL, limit=1000),
        *(reserve_stock(engine, str(order_id), [StockLine(skus[0], 1)]) for order_id in more),
        return_exceptions=True,
    )
    late = await confirm_reservation(engine, to_confirm_late[0])

    refusals = {"RESERVATION_RELEASED", "RESERVATION_EXPIRED"}  # of the repeats, after a release or expiry
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert [error for error in failures if not (isinstance(error, ServiceError) and error.code in refusals)] == []
    assert late is Confirmation.CONFIRMED_LATE
    assert await stock_of(engine, *skus) == {
        skus[0]: StockCount(skus[0], received=20, available=15, reserved=0, confirmed=5),
        skus[1]: StockCount(skus[1], received=3, available=1, reserved=0, confirmed=2),
    }
    assert [count for count in await unconserved_stock(engine) if count.sku in skus] == []


async def test_a_confirmation_that_cannot_take_the_stock_again_changes_nothing(engine: AsyncEngine) -> None:
    sku = await add_product(engine, stock=1)
    late, buyer = uuid.uuid4(), uuid.uuid4()
    await reserve_stock(engine, str(late), [StockLine(sku, 1)])
    await held_since_an_hour(engine, late)
    await expire_reservations(engine, ttl=TTL, limit=1000)
    await reserve_stock(engine, str(buyer), [StockLine(sku, 1)])

    with pytest.raises(StockGone, match="its stock is gone"):
        await confirm_reservation(engine, late)

    assert await reservation_status(engine, late) == "EXPIRED"
    assert await stock_of(engine, sku) == {sku: StockCount(sku, received=1, available=0, reserved=1, confirmed=0)}


async def test_a_batch_confirms_an_order_listed_twice_once(engine: AsyncEngine) -> None:
    sku = await add_product(engine, stock=10)
    first, second = uuid.uuid4(), uuid.uuid4()
    for order_id in (first, second):
        await reserve_stock(engine, str(order_id), [StockLine(sku, 2)])

    outcomes = await confirm_reservations(engine, [first, second, first])

    assert outcomes == [Confirmation.CONFIRMED, Confirmation.CONFIRMED, Confirmation.DUPLICATE]
    assert await stock_of(engine, sku) == {sku: StockCount(sku, received=10, available=6, reserved=0, confirmed=4)}
    assert await confirm_reservations(engine, [second]) == [Confirmation.DUPLICATE]


async def test_orders_without_a_reservation_fail_alone_in_a_batch(engine: AsyncEngine) -> None:
    sku = await add_product(engine, stock=10)
    before, after, stranger, tombstone = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for order_id in (before, after):
        await reserve_stock(engine, str(order_id), [StockLine(sku, 1)])
    assert await release_stock(engine, str(tombstone)) is False  # released before it ever reserved

    outcomes = await confirm_reservations(engine, [before, stranger, tombstone, after])

    assert [type(outcome) for outcome in outcomes] == [Confirmation, NoReservation, NoReservation, Confirmation]
    assert outcomes[0] is outcomes[3] is Confirmation.CONFIRMED
    assert "has no reservation" in str(outcomes[1])
    assert "released before it reserved anything" in str(outcomes[2])
    assert await stock_of(engine, sku) == {sku: StockCount(sku, received=10, available=8, reserved=0, confirmed=2)}


async def test_a_late_confirmation_without_stock_fails_alone_and_the_rest_of_its_batch_is_confirmed(
    engine: AsyncEngine,
) -> None:
    scarce, plenty = await add_product(engine, stock=1), await add_product(engine, stock=10)
    gone, late, on_time = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await reserve_stock(engine, str(gone), [StockLine(scarce, 1), StockLine(plenty, 1)])
    await reserve_stock(engine, str(late), [StockLine(plenty, 2)])
    await held_since_an_hour(engine, gone, late)
    assert {gone, late} <= set(await expire_reservations(engine, ttl=TTL, limit=1000))  # others' may expire too
    await reserve_stock(engine, str(on_time), [StockLine(scarce, 1)])  # the returned unit is sold again

    outcomes = await confirm_reservations(engine, [gone, late, on_time])

    assert isinstance(outcomes[0], StockGone)
    assert f"{scarce} (requested 1, available 0)" in str(outcomes[0])
    assert outcomes[1:] == [Confirmation.CONFIRMED_LATE, Confirmation.CONFIRMED]
    assert [await reservation_status(engine, order_id) for order_id in (gone, late, on_time)] == [
        "EXPIRED",
        "CONFIRMED",
        "CONFIRMED",
    ]
    assert await stock_of(engine, scarce, plenty) == {
        scarce: StockCount(scarce, received=1, available=0, reserved=0, confirmed=1),
        plenty: StockCount(plenty, received=10, available=8, reserved=0, confirmed=2),
    }


async def test_batches_racing_over_the_same_orders_confirm_each_once(engine: AsyncEngine) -> None:
    """Each batch locks its reservations in order id order, whatever order it lists them in, so
    consumers confirming overlapping batches neither deadlock nor confirm anything twice."""
    sku = await add_product(engine, stock=100)
    orders = [uuid.uuid4() for _ in range(40)]
    for order_id in orders:
        await reserve_stock(engine, str(order_id), [StockLine(sku, 1)])
    listings = [orders, orders[::-1], orders[::2], orders[1::2][::-1]]

    batches = await asyncio.gather(*(confirm_reservations(engine, listed) for listed in listings))

    outcomes = [
        (order_id, outcome)
        for listed, batch in zip(listings, batches, strict=True)
        for order_id, outcome in zip(listed, batch, strict=True)
    ]
    assert sorted(order_id for order_id, outcome in outcomes if outcome is Confirmation.CONFIRMED) == sorted(orders)
    assert {outcome for _, outcome in outcomes} == {Confirmation.CONFIRMED, Confirmation.DUPLICATE}
    assert await stock_of(engine, sku) == {sku: StockCount(sku, received=100, available=60, reserved=0, confirmed=40)}


async def test_unconserved_stock_names_a_product_whose_counts_do_not_add_up(engine: AsyncEngine) -> None:
    sku = await add_product(engine, stock=4)
    await reserve_stock(engine, str(uuid.uuid4()), [StockLine(sku, 1)])
    assert sku not in [count.sku for count in await unconserved_stock(engine)]

    async with engine.begin() as connection:  # a bug that puts stock back without releasing it
        await connection.execute(text("UPDATE products SET available = available + 1 WHERE sku = :sku"), {"sku": sku})

    assert [count for count in await unconserved_stock(engine) if count.sku == sku] == [
        StockCount(sku, received=4, available=4, reserved=1, confirmed=0)
    ]
