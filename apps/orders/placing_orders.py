"""What happens to an order in the orders service.

Placing an order:
1. The request is validated before anything else is called (VALIDATION_FAILED, with the field).
2. Inventory reserves the stock (all lines or none) under the order's new id, within a deadline:
   the caller's remaining time, capped by a setting. Inventory's refusals (UNKNOWN_SKU,
   OUT_OF_STOCK...) reach the caller unchanged; an unreachable inventory is
   INVENTORY_UNAVAILABLE, a slow one INVENTORY_TIMEOUT.
3. The order, its lines (at inventory's prices) and its OrderCreated event in the outbox commit
   in ONE transaction: no order without its event, no event without its order.
4. Whenever stock may be held for an order that was not recorded (inventory timed out, or the
   write failed: ORDERS_STORE_UNAVAILABLE), the reservation is released. ReleaseStock is
   idempotent, and inventory refuses a reservation that arrives after its release.

Once inventory may hold stock for an order, steps 2 to 4 run to the end even if the caller gives
up (its deadline passes, it cancels): they run in a task of their own that the caller's
cancellation does not reach. Nothing is half-done because a client went away.

A request with a client_request_id places at most one order, however often it is repeated (a
gateway that crashed before remembering the answer, a client retrying after a timeout):
- The customer's order with that id, if there is one, is the answer, and nothing else happens:
  no reservation, no event. The same id with other items is CLIENT_REQUEST_ID_REUSED.
- Copies racing each other each reserve under an order id of their own, but the unique
  constraint on (customer_id, client_request_id) lets one order commit. Each loser releases its
  own reservation and answers the winner's order. While the winner and a loser both hold stock,
  a product with too little for both refuses the loser (OUT_OF_STOCK); repeating it then finds
  the order. Reusing one order id for all copies instead would let a failed copy's release take
  the stock of the order that succeeded, and keep a retry from ever reserving again.

Reading: one order by id, or a customer's orders newest first, one keyset page at a time."""

import asyncio
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

import structlog
from sqlalchemy import tuple_
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from orderflow_contracts.events import OrderCreatedV1, OrderLineV1
from orderflow_contracts.identifiers import (
    MAX_ORDER_LINES,
    MAX_QUANTITY,
    is_client_request_id,
    is_customer_id,
    is_order_id,
    is_sku,
)
from orderflow_contracts.streams import ORDER_CREATED_SUBJECT
from orderflow_kit import faults
from orderflow_kit.errors import deadline_exceeded, failed_precondition, invalid_argument, not_found, unavailable
from orderflow_kit.faults import Fault
from orders import page_tokens
from orders.inventory_client import InventoryClient, InventoryUnavailable, Reservation, ReservationOutcomeUnknown
from orders.models import Order, OrderLine, OrderStatus
from orders.outbox import add_to_outbox, new_event

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

log = structlog.get_logger()
T = TypeVar("T")


class RequestedItem(NamedTuple):
    sku: str
    quantity: int


@dataclass(frozen=True)
class ClientRequest:
    """A request the client named: it places at most one order for the customer."""

    customer_id: str
    client_request_id: str


@dataclass(frozen=True)
class PlacedOrder:
    order: Order
    lines: list[OrderLine]


@dataclass(frozen=True)
class OrderPage:
    orders: list[PlacedOrder]
    # Empty on the last page.
    next_page_token: str


class Orders:
    """The orders service's use cases: place an order, get one, list a customer's orders."""

    def __init__(self, engine: AsyncEngine, inventory: InventoryClient, *, inventory_timeout: float) -> None:
        self._engine = engine
        self._inventory = inventory
        self._inventory_timeout = inventory_timeout
        # Work that outlives the call that started it; held here so it is not garbage-collected.
        self._unfinished: set[asyncio.Task[Any]] = set()

    async def place(
        self,
        customer_id: str,
        items: Sequence[RequestedItem],
        *,
        client_request_id: str | None = None,
        caller_time_remaining: float | None,
    ) -> PlacedOrder:
        """Reserve the stock, then record the order with its OrderCreated event; or, for a repeated
        `client_request_id`, answer the order it placed (see the module doc).

        `caller_time_remaining`: the caller's deadline in seconds from now, None when it has none."""
        quantities = validated_order(customer_id, items)
        request = None
        if client_request_id is not None:
            request = ClientRequest(customer_id, validated_client_request_id(client_request_id))
            earlier = await self._placed_for(request)
            if earlier is not None:
                return _repeated(request, earlier, quantities)
        order_id = uuid.uuid4()
        structlog.contextvars.bind_contextvars(order_id=str(order_id))
        time_limit = self._inventory_timeout
        if caller_time_remaining is not None:
            time_limit = min(time_limit, caller_time_remaining)
        placing = self._run_to_the_end(self._reserve_and_record(order_id, customer_id, quantities, request, time_limit))
        return await asyncio.shield(placing)

    async def get(self, order_id: str) -> PlacedOrder:
        if not is_order_id(order_id):
            raise invalid_argument("order_id must be a UUID in canonical form", field="order_id")
        async with AsyncSession(self._engine) as session:
            order = await session.get(Order, uuid.UUID(order_id))
            if order is None:
                raise not_found("ORDER_NOT_FOUND", f"order {order_id} does not exist", order_id=order_id)
            lines = await _lines_of(session, [order.order_id])
        return PlacedOrder(order, lines[order.order_id])

    async def list_for_customer(self, customer_id: str, page_size: int, page_token: str) -> OrderPage:
        """The customer's orders, newest first; `page_token` continues after a previous page."""
        if not is_customer_id(customer_id):
            raise invalid_argument("customer_id is not a valid customer id", field="customer_id")
        if not 0 <= page_size <= MAX_PAGE_SIZE:
            raise invalid_argument(f"page_size must be between 1 and {MAX_PAGE_SIZE} (0: default)", field="page_size")
        page_size = page_size or DEFAULT_PAGE_SIZE
        query = select(Order).where(col(Order.customer_id) == customer_id)
        if page_token:
            try:
                after = page_tokens.decode(page_token)
            except page_tokens.InvalidPageToken:
                raise invalid_argument("page_token is not a token this API returned", "INVALID_PAGE_TOKEN") from None
            query = query.where(tuple_(col(Order.created_at), col(Order.order_id)) < (after.created_at, after.order_id))
        query = query.order_by(col(Order.created_at).desc(), col(Order.order_id).desc()).limit(page_size + 1)
        async with AsyncSession(self._engine) as session:
            found = list((await session.exec(query)).all())
            page = found[:page_size]
            lines = await _lines_of(session, [order.order_id for order in page])
        next_page_token = ""
        if len(found) > page_size:
            next_page_token = page_tokens.encode(page_tokens.Cursor(page[-1].created_at, page[-1].order_id))
        return OrderPage([PlacedOrder(order, lines[order.order_id]) for order in page], next_page_token)

    async def finish_unfinished_work(self, within: float) -> None:
        """At shutdown: give placements and releases that outlived their callers `within` seconds to end."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self._unfinished and loop.time() < deadline:
            await asyncio.wait(set(self._unfinished), timeout=deadline - loop.time())
        if self._unfinished:
            log.error("stopping with unfinished work", tasks=len(self._unfinished))

    async def _reserve_and_record(
        self,
        order_id: uuid.UUID,
        customer_id: str,
        quantities: dict[str, int],
        request: ClientRequest | None,
        time_limit: float,
    ) -> PlacedOrder:
        try:
            reservation = await self._inventory.reserve(order_id, quantities, time_limit=time_limit)
        except InventoryUnavailable as error:
            raise unavailable("INVENTORY_UNAVAILABLE", "inventory is unavailable; nothing was ordered") from error
        except ReservationOutcomeUnknown as error:
            self._run_to_the_end(self._release(order_id, reason="inventory timed out"))
            raise deadline_exceeded(
                "INVENTORY_TIMEOUT", f"inventory did not answer within {time_limit:.3g} s; nothing was ordered"
            ) from error
        try:
            placed = _new_order(order_id, customer_id, reservation, request)
            await self._record(placed)
        except Exception as error:
            # Whatever went wrong, the order was not recorded: its stock must not stay reserved.
            self._run_to_the_end(self._release(order_id, reason="the order was not recorded"))
            if request is not None and isinstance(error, IntegrityError):
                # The unique constraint, most likely: a copy of this request recorded its order first.
                winner = await self._placed_for(request)
                if winner is not None:
                    return _repeated(request, winner, quantities)
            if isinstance(error, SQLAlchemyError | OSError):
                raise unavailable(
                    "ORDERS_STORE_UNAVAILABLE", "the order could not be stored; nothing was ordered"
                ) from error
            raise
        return placed

    async def _placed_for(self, request: ClientRequest) -> PlacedOrder | None:
        """The order `request` placed before, if any."""
        query = select(Order).where(
            col(Order.customer_id) == request.customer_id, col(Order.client_request_id) == request.client_request_id
        )
        try:
            async with AsyncSession(self._engine) as session:
                order = (await session.exec(query)).one_or_none()
                if order is None:
                    return None
                lines = await _lines_of(session, [order.order_id])
        except (SQLAlchemyError, OSError) as error:
            raise unavailable(
                "ORDERS_STORE_UNAVAILABLE", "the orders database is unavailable; nothing was ordered"
            ) from error
        return PlacedOrder(order, lines[order.order_id])

    async def _record(self, placed: PlacedOrder) -> None:
        """The order, its lines and its OrderCreated event: one transaction, all or nothing."""
        order = placed.order
        event = new_event(
            OrderCreatedV1.TYPE, subject=str(order.order_id), data=_order_created(placed), time=order.created_at
        )
        async with AsyncSession(self._engine, expire_on_commit=False) as session, session.begin():
            session.add(order)
            await session.flush()  # the lines' foreign key needs the order row first
            session.add_all(placed.lines)
            await add_to_outbox(session, event, aggregate_id=order.order_id, nats_subject=ORDER_CREATED_SUBJECT)
            # Fault flag (docs/fault-flags.md): die with the stock reserved and nothing committed.
            faults.crash_point(Fault.ORDERS_CRASH_BEFORE_COMMIT, order_id=str(order.order_id))

    async def _release(self, order_id: uuid.UUID, *, reason: str) -> None:
        try:
            await self._inventory.release(order_id)
        except InventoryUnavailable as error:
            # The stock stays held. ReleaseStock is idempotent: an operator can repeat it safely.
            log.error("reservation NOT released", order_id=str(order_id), reason=reason, error=str(error))
        else:
            log.info("reservation released", order_id=str(order_id), reason=reason)

    def _run_to_the_end(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Start `work` in its own task, beyond the reach of the current call's cancellation."""
        task = asyncio.create_task(work)
        self._unfinished.add(task)
        task.add_done_callback(self._unfinished.discard)
        return task


def validated_order(customer_id: str, items: Sequence[RequestedItem]) -> dict[str, int]:
    """The requested quantity per SKU, in request order; VALIDATION_FAILED names the bad field."""
    if not is_customer_id(customer_id):
        raise invalid_argument("customer_id is not a valid customer id", field="customer_id")
    if not items:
        raise invalid_argument("items must hold at least one item", field="items")
    if len(items) > MAX_ORDER_LINES:
        raise invalid_argument(f"items must hold at most {MAX_ORDER_LINES} lines", field="items")
    quantities: dict[str, int] = {}
    for index, item in enumerate(items):
        if not is_sku(item.sku):
            raise invalid_argument(f"items[{index}].sku is not a valid SKU", field=f"items[{index}].sku")
        if item.sku in quantities:
            raise invalid_argument(
                f"items[{index}].sku {item.sku} appears twice; order it once with the total quantity",
                field=f"items[{index}].sku",
            )
        if not 1 <= item.quantity <= MAX_QUANTITY:
            raise invalid_argument(
                f"items[{index}].quantity must be between 1 and {MAX_QUANTITY}", field=f"items[{index}].quantity"
            )
        quantities[item.sku] = item.quantity
    return quantities


def validated_client_request_id(client_request_id: str) -> str:
    if not is_client_request_id(client_request_id):
        raise invalid_argument(
            "client_request_id must be 1 to 128 printable ASCII characters without spaces", field="client_request_id"
        )
    return client_request_id


def _repeated(request: ClientRequest, earlier: PlacedOrder, quantities: dict[str, int]) -> PlacedOrder:
    """The answer to a repeated request: the order it placed, if it asks for the same items."""
    if {line.sku: line.quantity for line in earlier.lines} != quantities:
        order_id = str(earlier.order.order_id)
        raise failed_precondition(
            "CLIENT_REQUEST_ID_REUSED",
            f"client_request_id {request.client_request_id} already placed order {order_id} with other items; "
            "a new order needs a new client_request_id",
            order_id=order_id,
        )
    log.info("repeated request answered with its order", order_id=str(earlier.order.order_id))
    return earlier


def _new_order(
    order_id: uuid.UUID, customer_id: str, reservation: Reservation, request: ClientRequest | None
) -> PlacedOrder:
    lines = [
        OrderLine(order_id=order_id, sku=line.sku, quantity=line.quantity, unit_price_cents=line.unit_price_cents)
        for line in reservation.lines
    ]
    order = Order(
        order_id=order_id,
        customer_id=customer_id,
        status=OrderStatus.CREATED,
        total_cents=sum(line.quantity * line.unit_price_cents for line in lines),
        currency=reservation.currency,
        created_at=datetime.now(UTC),
        client_request_id=request.client_request_id if request else None,
    )
    return PlacedOrder(order, lines)


def _order_created(placed: PlacedOrder) -> bytes:
    order = placed.order
    return (
        OrderCreatedV1(
            order_id=order.order_id,
            customer_id=order.customer_id,
            items=[
                OrderLineV1(sku=line.sku, quantity=line.quantity, unit_price_cents=line.unit_price_cents)
                for line in placed.lines
            ],
            total_cents=order.total_cents,
            currency=order.currency,
            created_at=order.created_at,
        )
        .model_dump_json()
        .encode()
    )


async def _lines_of(session: AsyncSession, order_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[OrderLine]]:
    by_order: dict[uuid.UUID, list[OrderLine]] = {order_id: [] for order_id in order_ids}
    query = select(OrderLine).where(col(OrderLine.order_id).in_(order_ids)).order_by(col(OrderLine.sku))
    for line in (await session.exec(query)).all():
        by_order[line.order_id].append(line)
    return by_order
