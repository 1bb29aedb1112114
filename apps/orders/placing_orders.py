"""What happens to an order in the orders service.

Placing an order:
1. The request is validated before anything else is called (VALIDATION_FAILED, with the field).
2. Inventory reserves the stock (all lines or none) under the order's new id, within a deadline:
   the caller's remaining time, capped by a setting. Inventory's refusals (UNKNOWN_SKU,
   OUT_OF_STOCK...) reach the caller unchanged; an unreachable inventory is
   INVENTORY_UNAVAILABLE, a slow one INVENTORY_TIMEOUT.
3. The order, its lines (at inventory's prices) and its OrderCreated event in the outbox commit
   in ONE statement, a transaction of its own: no order without its event, no event without its
   order.
4. Whenever stock may be held for an order that was not recorded (inventory timed out, failed
   or could not be reached, since it may have committed and lost its answer; or the write failed:
   ORDERS_STORE_UNAVAILABLE), the reservation is released, in the background: the caller gets
   its answer at once. The release is retried until inventory confirms it (ReleaseStock is
   idempotent, and inventory refuses a reservation that arrives after its release), for as long
   as orders runs, up to `inventory_release_within_seconds`; if orders stops first, inventory's
   sweeper expires the reservation after its TTL.

Once inventory may hold stock for an order, steps 2 to 4 run to the end even if the caller gives
up (its deadline passes, it cancels): they run in a task of their own that the caller's
cancellation does not reach. Nothing is half-done because a client went away.

A request with a client_request_id places at most one order, however often it is repeated (a
gateway that crashed before remembering the answer, a client retrying after a timeout), and never
answers anything that contradicts that order:
- The first copy claims the id (one INSERT into order_requests, in place of a lookup: the hot path
  stays one round trip) under the order id it will reserve and record with, for
  ORDERFLOW_PLACEMENT_LEASE_SECONDS.
- A repeat finds the claim. Placed: the order is the answer, and nothing else happens (no
  reservation, no event); the same id with other items is CLIENT_REQUEST_ID_REUSED. Still held:
  CLIENT_REQUEST_IN_FLIGHT (ABORTED), a retryable answer, never a conclusive one such as
  OUT_OF_STOCK that the held placement could still contradict by committing. Lease expired (its
  placement died, or is stuck): the repeat takes the claim over under an order id of its own.
- Recording an order marks its claim placed in the same statement, and only while the claim is
  still its own: a placement that was taken over commits nothing, releases its stock and answers
  what the request's state now is. So exactly one placement per id can ever record an order, and
  a refusal answered to the holder of the claim is the truth for the id.
- A placement that fails (refused, inventory away, the write failed) gives its claim up, so a
  repeat runs at once. Each placement reserves under an order id of its own: reusing one for
  all would let a failed placement's release take the stock of the order that succeeded, and keep
  a retry from ever reserving again (inventory refuses an order id after its release).
- The unique constraint on (customer_id, client_request_id) stays as a second net: a loser
  releases its own reservation and answers the winner's order.

Reading: one order by id, or a customer's orders newest first, one keyset page at a time.

The database is reached with SQLAlchemy Core on a connection (no ORM session), one round trip per
statement, and no BEGIN or COMMIT around it: recording an order is ONE statement, and each read
fetches the orders together with their lines."""

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

import structlog
from opentelemetry.trace import SpanKind
from prometheus_client import Counter
from sqlalchemy import FromClause, Row, Select, TextClause, bindparam, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_contracts.cloudevents import CloudEvent
from orderflow_contracts.events import OrderCreatedV1, OrderLineV1
from orderflow_contracts.identifiers import (
    is_client_request_id,
    is_customer_id,
    is_order_id,
)
from orderflow_contracts.streams import ORDER_CREATED_SUBJECT
from orderflow_kit import faults, tracing
from orderflow_kit.db import autocommit
from orderflow_kit.errors import (
    ServiceError,
    aborted,
    deadline_exceeded,
    failed_precondition,
    invalid_argument,
    not_found,
    unavailable,
)
from orderflow_kit.faults import Fault
from orderflow_kit.order_lines import check_order_lines
from orders import page_tokens
from orders.inventory_client import (
    InventoryClient,
    InventoryUnavailable,
    PricedLine,
    Reservation,
    ReservationOutcomeUnknown,
)
from orders.models import ORDER_LINES, ORDER_REQUESTS, ORDERS, OrderStatus
from orders.outbox import NOTIFY_CHANNEL, new_event

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# How long a client request's claim keeps repeats waiting for its placement (OrdersSettings).
DEFAULT_PLACEMENT_LEASE_SECONDS = 30.0
# Rounds of claim / look / take over before a repeat is told to come back (each round saw a change).
CLAIM_ROUNDS = 3
# What CLIENT_REQUEST_IN_FLIGHT suggests waiting before the repeat, in seconds.
RETRY_AFTER_SECONDS = 1

log = structlog.get_logger()

# Committed new orders (each with its OrderCreated event in the outbox); a repeated request counts once.
ORDERS_CREATED = Counter("orderflow_orders_created_total", "Orders recorded, each with its OrderCreated event")
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
# data-modifying CTE, so one round trip, and atomic on its own: it runs without BEGIN and COMMIT
# (two round trips fewer). The lines arrive as three arrays of the same length, one element per
# line. pg_notify wakes the outbox relay when it commits (outbox.py). Every INSERT takes its row
# from `owned`: for a client request, only while its claim is still this placement's (marked
# placed here); when it was taken over, nothing is written and the statement answers no row.
_RECORD_ORDER = """
    WITH owned AS ({owned}), new_order AS (
        INSERT INTO orders (order_id, customer_id, status, total_cents, currency, created_at, client_request_id)
        SELECT :order_id, :customer_id, :status, :total_cents, :currency, :created_at, :client_request_id
        FROM owned
        RETURNING order_id
    ), new_lines AS (
        INSERT INTO order_lines (order_id, sku, quantity, unit_price_cents)
        SELECT new_order.order_id, line.sku, line.quantity, line.unit_price_cents
        FROM new_order, unnest(
            CAST(:skus AS varchar[]), CAST(:quantities AS integer[]), CAST(:unit_prices_cents AS bigint[])
        ) AS line (sku, quantity, unit_price_cents)
    ), new_event AS (
        INSERT INTO outbox (id, aggregate_id, event_type, subject, payload, headers, created_at)
        SELECT :event_id, new_order.order_id, :event_type, :nats_subject, :payload, :headers, :created_at
        FROM new_order
    )
    SELECT pg_notify(:notify_channel, '') FROM new_order
"""
_RECORD_ANY_ORDER = text(_RECORD_ORDER.format(owned="SELECT 1")).bindparams(bindparam("headers", type_=JSONB))
_RECORD_REQUESTED_ORDER = text(
    _RECORD_ORDER.format(
        owned="""
        UPDATE order_requests SET placing_until = NULL
        WHERE customer_id = :customer_id AND client_request_id = :client_request_id AND order_id = :order_id
        RETURNING 1"""
    )
).bindparams(bindparam("headers", type_=JSONB))

# A client request's claim, for the placement under :order_id, unless another holds it: one round trip.
_CLAIM_REQUEST = text(
    """
    INSERT INTO order_requests (customer_id, client_request_id, order_id, placing_until)
    VALUES (:customer_id, :client_request_id, :order_id, now() + make_interval(secs => :lease_seconds))
    ON CONFLICT (customer_id, client_request_id) DO NOTHING
    RETURNING order_id
    """
)
# Who holds a claim: placed (its order is recorded), placing (its placement may still run) or neither.
_CLAIM_STATE = select(
    ORDER_REQUESTS.c.order_id,
    ORDER_REQUESTS.c.placing_until.is_(None).label("placed"),
    (ORDER_REQUESTS.c.placing_until > func.now()).label("placing"),
).where(
    ORDER_REQUESTS.c.customer_id == bindparam("customer_id"),
    ORDER_REQUESTS.c.client_request_id == bindparam("client_request_id"),
)
# Take over a claim whose lease expired, if it is still :holder's and no one is recording under it
# right now (a locked row is a placement committing its order: it is skipped, never waited for).
_TAKE_OVER = text(
    """
    UPDATE order_requests
    SET order_id = :order_id, placing_until = now() + make_interval(secs => :lease_seconds)
    WHERE (customer_id, client_request_id) IN (
        SELECT customer_id, client_request_id FROM order_requests
        WHERE customer_id = :customer_id AND client_request_id = :client_request_id
          AND order_id = :holder AND placing_until <= now()
        FOR UPDATE SKIP LOCKED
    )
    RETURNING order_id
    """
)
# A failed placement's claim goes, so a repeat runs at once; never a placed one's, nor another's.
_GIVE_UP = text(
    """
    DELETE FROM order_requests
    WHERE customer_id = :customer_id AND client_request_id = :client_request_id
      AND order_id = :order_id AND placing_until IS NOT NULL
    """
)


class _ClaimLost(Exception):
    """The placement's claim was taken over before it could record its order."""


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

    def __init__(
        self,
        engine: AsyncEngine,
        inventory: InventoryClient,
        *,
        inventory_timeout: float,
        placement_lease: float = DEFAULT_PLACEMENT_LEASE_SECONDS,
    ) -> None:
        # Every statement here is a transaction of its own (orderflow_kit.db.autocommit).
        self._engine = engine
        self._inventory = inventory
        self._inventory_timeout = inventory_timeout
        self._placement_lease = placement_lease
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
        order_id = uuid.uuid4()
        request = None
        if client_request_id is not None:
            request = ClientRequest(customer_id, validated_client_request_id(client_request_id))
            earlier = await self._claim(request, order_id, quantities)
            if earlier is not None:
                return earlier
        structlog.contextvars.bind_contextvars(order_id=str(order_id))
        time_limit = self._inventory_timeout
        if caller_time_remaining is not None:
            time_limit = min(time_limit, caller_time_remaining)
        placing = self._run_to_the_end(self._reserve_and_record(order_id, customer_id, quantities, request, time_limit))
        return await asyncio.shield(placing)

    async def get(self, order_id: str) -> PlacedOrder:
        if not is_order_id(order_id):
            raise invalid_argument("order_id must be a UUID in canonical form", field="order_id")
        async with autocommit(self._engine) as connection:
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
                raise invalid_argument(
                    "page_token is not a page token: pass next_page_token back as given", "INVALID_PAGE_TOKEN"
                ) from None
            query = _NEXT_PAGE
            parameters |= {"after_created_at": after.created_at, "after_order_id": after.order_id}
        async with autocommit(self._engine) as connection:
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

    async def _claim(
        self, request: ClientRequest, order_id: uuid.UUID, quantities: dict[str, int]
    ) -> PlacedOrder | None:
        """Claim `request` for the placement under `order_id` (None), or answer the order it placed;
        CLIENT_REQUEST_IN_FLIGHT while another placement may still record one (see the module doc)."""
        keys = {"customer_id": request.customer_id, "client_request_id": request.client_request_id}
        mine = {**keys, "order_id": order_id, "lease_seconds": self._placement_lease}
        for _ in range(CLAIM_ROUNDS):
            if await self._store(_CLAIM_REQUEST, mine) is not None:
                return None
            holder = await self._store(_CLAIM_STATE, keys)
            if holder is None:
                continue  # its placement failed and gave it up meanwhile: claim it again
            if holder.placed:
                earlier = await self._placed_for(request)
                if earlier is not None:
                    return _repeated(request, earlier, quantities)
            elif holder.placing:
                break
            elif await self._store(_TAKE_OVER, {**mine, "holder": holder.order_id}) is not None:
                log.warning("client request taken over from a placement past its lease", holder=str(holder.order_id))
                return None
        raise _in_flight(request)

    async def _store(self, statement: Any, parameters: dict[str, Any]) -> Row[Any] | None:
        """The first row `statement` answers, in a transaction of its own."""
        try:
            async with autocommit(self._engine) as connection:
                return (await connection.execute(statement, parameters)).first()
        except (SQLAlchemyError, OSError) as error:
            raise unavailable(
                "ORDERS_STORE_UNAVAILABLE", "the orders database is unavailable; nothing was ordered"
            ) from error

    @contextlib.asynccontextmanager
    async def _claim_given_up_on_failure(
        self, request: ClientRequest | None, order_id: uuid.UUID
    ) -> AsyncIterator[None]:
        """A placement that fails gives its claim up (if it still has one): a repeat runs at once."""
        try:
            yield
        except BaseException:
            if request is not None:
                await self._give_up(request, order_id)
            raise

    async def _give_up(self, request: ClientRequest, order_id: uuid.UUID) -> None:
        """Should this fail, the claim's lease runs out and a repeat takes it over then."""
        parameters = {
            "customer_id": request.customer_id,
            "client_request_id": request.client_request_id,
            "order_id": order_id,
        }
        try:
            async with autocommit(self._engine) as connection:
                await connection.execute(_GIVE_UP, parameters)
        except (SQLAlchemyError, OSError) as error:
            log.warning("claim of a failed placement not given up; its lease runs out", error=str(error))

    async def _reserve_and_record(
        self,
        order_id: uuid.UUID,
        customer_id: str,
        quantities: dict[str, int],
        request: ClientRequest | None,
        time_limit: float,
    ) -> PlacedOrder:
        """Reserve and record; see the module doc for what happens when either fails."""
        async with self._claim_given_up_on_failure(request, order_id):
            try:
                reservation = await self._inventory.reserve(order_id, quantities, time_limit=time_limit)
            except InventoryUnavailable as error:
                # Perhaps it reserved and its answer was lost (killed, a reset connection): give back
                # whatever it may hold for this order; it costs nothing when it holds nothing.
                self._run_to_the_end(self._release(order_id, reason="inventory failed to answer"))
                raise unavailable("INVENTORY_UNAVAILABLE", "inventory is unavailable; nothing was ordered") from error
            except ReservationOutcomeUnknown as error:
                self._run_to_the_end(self._release(order_id, reason="inventory timed out"))
                raise deadline_exceeded(
                    "INVENTORY_TIMEOUT", f"inventory did not answer within {time_limit:.3g} s; nothing was ordered"
                ) from error
            try:
                placed = _new_order(order_id, customer_id, reservation, request)
                await self._record(placed, request)
            except Exception as error:
                # Whatever went wrong, the order was not recorded: its stock must not stay reserved.
                self._run_to_the_end(self._release(order_id, reason="the order was not recorded"))
                if request is not None and isinstance(error, _ClaimLost):
                    # Another placement holds the request now: its order, or come back for it.
                    log.warning("claim taken over before the order was recorded")
                    return await self._now_answered(request, quantities)
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

    async def _now_answered(self, request: ClientRequest, quantities: dict[str, int]) -> PlacedOrder:
        winner = await self._placed_for(request)
        if winner is None:
            raise _in_flight(request)
        return _repeated(request, winner, quantities)

    async def _placed_for(self, request: ClientRequest) -> PlacedOrder | None:
        """The order `request` placed before, if any."""
        parameters = {"customer_id": request.customer_id, "client_request_id": request.client_request_id}
        try:
            async with autocommit(self._engine) as connection:
                found = _placed_orders(await connection.execute(_ORDER_OF_REQUEST, parameters))
        except (SQLAlchemyError, OSError) as error:
            raise unavailable(
                "ORDERS_STORE_UNAVAILABLE", "the orders database is unavailable; nothing was ordered"
            ) from error
        return found[0] if found else None

    async def _record(self, placed: PlacedOrder, request: ClientRequest | None) -> None:
        """The order, its lines and its OrderCreated event: one statement, all or nothing;
        for a client request, only while its claim is this placement's (else _ClaimLost). The
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
            await self._write(placed, event, _RECORD_ANY_ORDER if request is None else _RECORD_REQUESTED_ORDER)

    async def _write(self, placed: PlacedOrder, event: CloudEvent, statement: TextClause) -> None:
        # Fault flag (docs/fault-flags.md): die with the stock reserved and nothing committed.
        faults.crash_point(Fault.ORDERS_CRASH_BEFORE_COMMIT, order_id=str(placed.order_id))
        async with autocommit(self._engine) as connection:
            recorded = await connection.execute(
                statement,
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
            if recorded.first() is None:
                raise _ClaimLost(str(placed.order_id))
        ORDERS_CREATED.inc()

    async def _release(self, order_id: uuid.UUID, *, reason: str) -> None:
        try:
            await self._inventory.release(order_id)
        except InventoryUnavailable as error:
            # The stock stays held until inventory's sweeper expires the reservation (its TTL).
            # ReleaseStock is idempotent: an operator can repeat it safely.
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
    check_order_lines(items)
    return {item.sku: item.quantity for item in items}


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


def _in_flight(request: ClientRequest) -> ServiceError:
    return aborted(
        "CLIENT_REQUEST_IN_FLIGHT",
        f"client_request_id {request.client_request_id} is being placed by an earlier request; "
        f"repeat it in {RETRY_AFTER_SECONDS} s for its order",
        retry_after_seconds=str(RETRY_AFTER_SECONDS),
    )


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
