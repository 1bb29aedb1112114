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

Reading: one order by id, or a customer's orders newest first, one keyset page at a time.

The database is reached with SQLAlchemy Core on a connection (no ORM session), one round trip per
statement: recording an order is ONE statement inside its transaction, and each read fetches the
orders together with their lines."""

import asyncio
import itertools
import uuid
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

import structlog
from opentelemetry.trace import SpanKind
from sqlalchemy import FromClause, Row, Select, bindparam, select, text, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_contracts.cloudevents import CloudEvent
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
from orderflow_kit import faults, tracing
from orderflow_kit.errors import deadline_exceeded, failed_precondition, invalid_argument, not_found, unavailable
from orderflow_kit.faults import Fault
from orders import page_tokens
from orders.inventory_client import (
    InventoryClient,
    InventoryUnavailable,
    PricedLine,
    Reservation,
    ReservationOutcomeUnknown,
)
from orders.models import ORDER_LINES, ORDERS, OrderStatus
from orders.outbox import NOTIFY_CHANNEL, new_event

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


@dataclass(frozen=True, slots=True)
class PlacedOrder:
    order_id: uuid.UUID
    customer_id: str
    status: OrderStatus
    total_cents: int
    currency: str
    created_at: datetime
    client_request_id: str | None
    # At inventory's prices, in SKU order.
    lines: tuple[PricedLine, ...]


@dataclass(frozen=True)
class OrderPage:
    orders: list[PlacedOrder]
    # Empty on the last page.
    next_page_token: str


# The order, its lines and its OrderCreated event in the outbox: ONE statement, each INSERT a
# data-modifying CTE, so one round trip; the transaction around it commits all or nothing. The
# lines arrive as three arrays of the same length, one element per line. pg_notify wakes the
# outbox relay when the transaction commits (outbox.py).
_RECORD_ORDER = text(
    """
    WITH new_order AS (
        INSERT INTO orders (order_id, customer_id, status, total_cents, currency, created_at, client_request_id)
        VALUES (:order_id, :customer_id, :status, :total_cents, :currency, :created_at, :client_request_id)
        RETURNING order_id
    ), new_lines AS (
        INSERT INTO order_lines (order_id, sku, quantity, unit_price_cents)
        SELECT new_order.order_id, line.sku, line.quantity, line.unit_price_cents
        FROM new_order, unnest(
            CAST(:skus AS varchar[]), CAST(:quantities AS integer[]), CAST(:unit_prices_cents AS bigint[])
        ) AS line (sku, quantity, unit_price_cents)
    ), new_event AS (
        INSERT INTO outbox (id, aggregate_id, event_type, subject, payload, headers, created_at)
        VALUES (:event_id, :order_id, :event_type, :nats_subject, :payload, :headers, :created_at)
    )
    SELECT pg_notify(:notify_channel, '')
    """
).bindparams(bindparam("headers", type_=JSONB))


def _with_lines(orders: FromClause) -> Select[Any]:
    """Rows of `orders`, each repeated once per line it has, with that line's columns: whole
    orders in one round trip. (An order always has lines; the outer join keeps one that had none.)"""
    return select(orders, ORDER_LINES.c.sku, ORDER_LINES.c.quantity, ORDER_LINES.c.unit_price_cents).outerjoin(
        ORDER_LINES, ORDER_LINES.c.order_id == orders.c.order_id
    )


_ORDER_BY_ID = _with_lines(ORDERS).where(ORDERS.c.order_id == bindparam("order_id")).order_by(ORDER_LINES.c.sku)
_ORDER_OF_REQUEST = (
    _with_lines(ORDERS)
    .where(ORDERS.c.customer_id == bindparam("customer_id"))
    .where(ORDERS.c.client_request_id == bindparam("client_request_id"))
    .order_by(ORDER_LINES.c.sku)
)


def _orders_page(*, after_cursor: bool) -> Select[Any]:
    """A customer's orders, newest first, `limit` of them (after the cursor's), with their lines."""
    page = (
        select(ORDERS)
        .where(ORDERS.c.customer_id == bindparam("customer_id"))
        .order_by(ORDERS.c.created_at.desc(), ORDERS.c.order_id.desc())
        .limit(bindparam("limit"))
    )
    if after_cursor:
        page = page.where(
            tuple_(ORDERS.c.created_at, ORDERS.c.order_id)
            < tuple_(bindparam("after_created_at"), bindparam("after_order_id"))
        )
    orders = page.subquery("page")
    return _with_lines(orders).order_by(orders.c.created_at.desc(), orders.c.order_id.desc(), ORDER_LINES.c.sku)


_FIRST_PAGE = _orders_page(after_cursor=False)
_NEXT_PAGE = _orders_page(after_cursor=True)


class Orders:
    """The orders service's use cases: place an order, get one, list a customer's orders."""

    def __init__(self, engine: AsyncEngine, inventory: InventoryClient, *, inventory_timeout: float) -> None:
        self._engine = engine
        # Reads are single statements: run without BEGIN and ROLLBACK, each is one round trip.
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")
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
        async with self._reader.connect() as connection:
            rows = await connection.execute(_ORDER_BY_ID, {"order_id": uuid.UUID(order_id)})
            found = _placed_orders(rows)
        if not found:
            raise not_found("ORDER_NOT_FOUND", f"order {order_id} does not exist", order_id=order_id)
        return found[0]

    async def list_for_customer(self, customer_id: str, page_size: int, page_token: str) -> OrderPage:
        """The customer's orders, newest first; `page_token` continues after a previous page."""
        if not is_customer_id(customer_id):
            raise invalid_argument("customer_id is not a valid customer id", field="customer_id")
        if not 0 <= page_size <= MAX_PAGE_SIZE:
            raise invalid_argument(f"page_size must be between 1 and {MAX_PAGE_SIZE} (0: default)", field="page_size")
        page_size = page_size or DEFAULT_PAGE_SIZE
        # One order more than the page shows: whether there is a next page.
        query, parameters = _FIRST_PAGE, {"customer_id": customer_id, "limit": page_size + 1}
        if page_token:
            try:
                after = page_tokens.decode(page_token)
            except page_tokens.InvalidPageToken:
                raise invalid_argument("page_token is not a token this API returned", "INVALID_PAGE_TOKEN") from None
            query = _NEXT_PAGE
            parameters |= {"after_created_at": after.created_at, "after_order_id": after.order_id}
        async with self._reader.connect() as connection:
            found = _placed_orders(await connection.execute(query, parameters))
        page = found[:page_size]
        next_page_token = ""
        if len(found) > page_size:
            next_page_token = page_tokens.encode(page_tokens.Cursor(page[-1].created_at, page[-1].order_id))
        return OrderPage(page, next_page_token)

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
        parameters = {"customer_id": request.customer_id, "client_request_id": request.client_request_id}
        try:
            async with self._reader.connect() as connection:
                found = _placed_orders(await connection.execute(_ORDER_OF_REQUEST, parameters))
        except (SQLAlchemyError, OSError) as error:
            raise unavailable(
                "ORDERS_STORE_UNAVAILABLE", "the orders database is unavailable; nothing was ordered"
            ) from error
        return found[0] if found else None

    async def _record(self, placed: PlacedOrder) -> None:
        """The order, its lines and its OrderCreated event: one transaction, all or nothing. The
        event is made inside its *create* span (the outbox write): the context it carries."""
        with tracing.span(
            f"create {ORDER_CREATED_SUBJECT}",
            kind=SpanKind.PRODUCER,
            attributes=tracing.messaging_attributes("create", ORDER_CREATED_SUBJECT, order_id=str(placed.order_id)),
        ) as creating:
            event = new_event(
                OrderCreatedV1.TYPE, subject=str(placed.order_id), data=_order_created(placed), time=placed.created_at
            )
            creating.set_attribute("messaging.message.id", event.id)
            await self._write(placed, event)

    async def _write(self, placed: PlacedOrder, event: CloudEvent) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                _RECORD_ORDER,
                {
                    "order_id": placed.order_id,
                    "customer_id": placed.customer_id,
                    "status": placed.status.value,
                    "total_cents": placed.total_cents,
                    "currency": placed.currency,
                    "created_at": placed.created_at,
                    "client_request_id": placed.client_request_id,
                    "skus": [line.sku for line in placed.lines],
                    "quantities": [line.quantity for line in placed.lines],
                    "unit_prices_cents": [line.unit_price_cents for line in placed.lines],
                    "event_id": uuid.UUID(event.id),
                    "event_type": event.type,
                    "nats_subject": ORDER_CREATED_SUBJECT,
                    "payload": event.data,
                    "headers": event.to_headers(),
                    "notify_channel": NOTIFY_CHANNEL,
                },
            )
            # Fault flag (docs/fault-flags.md): die with the stock reserved and nothing committed.
            faults.crash_point(Fault.ORDERS_CRASH_BEFORE_COMMIT, order_id=str(placed.order_id))

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
        order_id = str(earlier.order_id)
        raise failed_precondition(
            "CLIENT_REQUEST_ID_REUSED",
            f"client_request_id {request.client_request_id} already placed order {order_id} with other items; "
            "a new order needs a new client_request_id",
            order_id=order_id,
        )
    log.info("repeated request answered with its order", order_id=str(earlier.order_id))
    return earlier


def _new_order(
    order_id: uuid.UUID, customer_id: str, reservation: Reservation, request: ClientRequest | None
) -> PlacedOrder:
    lines = tuple(sorted(reservation.lines))
    return PlacedOrder(
        order_id=order_id,
        customer_id=customer_id,
        status=OrderStatus.CREATED,
        total_cents=sum(line.quantity * line.unit_price_cents for line in lines),
        currency=reservation.currency,
        created_at=datetime.now(UTC),
        client_request_id=request.client_request_id if request else None,
        lines=lines,
    )


def _order_created(placed: PlacedOrder) -> bytes:
    return (
        OrderCreatedV1(
            order_id=placed.order_id,
            customer_id=placed.customer_id,
            items=[
                OrderLineV1(sku=line.sku, quantity=line.quantity, unit_price_cents=line.unit_price_cents)
                for line in placed.lines
            ],
            total_cents=placed.total_cents,
            currency=placed.currency,
            created_at=placed.created_at,
        )
        .model_dump_json()
        .encode()
    )


def _placed_orders(rows: Iterable[Row[Any]]) -> list[PlacedOrder]:
    """Orders from rows of `_with_lines`: consecutive rows of one order are that order's lines."""
    placed = []
    for _, group in itertools.groupby(rows, key=lambda row: row.order_id):
        order_rows = list(group)
        first = order_rows[0]
        placed.append(
            PlacedOrder(
                order_id=first.order_id,
                customer_id=first.customer_id,
                status=OrderStatus(first.status),
                total_cents=first.total_cents,
                currency=first.currency,
                created_at=first.created_at,
                client_request_id=first.client_request_id,
                lines=tuple(
                    PricedLine(row.sku, row.quantity, row.unit_price_cents) for row in order_rows if row.sku is not None
                ),
            )
        )
    return placed
