"""The fault-injection harness: a steady stream of orders through the gateway, something broken
in the middle, then a reconciliation of every database and consumer against what the gateway
accepted. One line per case says how it went, e.g.
`nats-restart: orders 200, published 200, awarded 200, duplicates 0, lost 0`."""

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import nats
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.stock_conservation import unconserved_stock
from orderflow_contracts.streams import ORDERS_STREAM
from orderflow_kit.db import create_engine
from tests.support.pipeline import Pipeline
from tests.support.polling import eventually
from tests.support.tokens import bearer, customer_token

CATALOG = [
    {"sku": "CHAOS-MUG", "name": "Chaos mug", "price_cents": 1250, "stock": 1_000_000},
    {"sku": "CHAOS-TEE", "name": "Chaos tee", "price_cents": 2599, "stock": 1_000_000},
    {"sku": "CHAOS-CAP", "name": "Chaos cap", "price_cents": 1999, "stock": 1_000_000},
]
ORDERS_PER_CASE = 240
ORDERS_PER_SECOND = 40.0
CUSTOMERS = 8
SETTLE_WITHIN = 90.0

# Each case's line goes into its test report under this name; conftest.py prints them all.
RECONCILIATION = "reconciliation"
# pytest's `record_property` fixture.
RecordProperty = Callable[[str, object], None]

_OUTBOX_COUNTS = """
    SELECT count(*) FILTER (WHERE published_at IS NOT NULL),
           count(*) FILTER (WHERE published_at IS NULL),
           count(*) - count(DISTINCT aggregate_id)
      FROM outbox
"""
_UNBALANCED_CUSTOMERS = """
    SELECT b.customer_id
      FROM balances b
      LEFT JOIN (SELECT customer_id, sum(points) AS points, count(*) AS orders FROM ledger GROUP BY customer_id) l
        ON l.customer_id = b.customer_id
     WHERE b.points IS DISTINCT FROM l.points OR b.orders_awarded IS DISTINCT FROM l.orders
"""
_RESERVATIONS = """
    SELECT r.order_id, r.status, coalesce(sum(l.quantity), 0)
      FROM reservations r LEFT JOIN reservation_lines l USING (order_id)
     GROUP BY r.order_id, r.status
"""
_CONFIRMED_UNITS = """
    SELECT l.sku, sum(l.quantity)
      FROM reservation_lines l JOIN reservations r USING (order_id)
     WHERE r.status = 'CONFIRMED'
     GROUP BY l.sku
"""


@dataclass(frozen=True)
class Answer:
    """What the gateway said to one order; status 0 when no answer came (connection refused)."""

    status: int
    order_id: str | None
    code: str | None
    content_type: str


async def steady_orders(
    gateway_url: str, *, disruption: Callable[[], Coroutine[Any, Any, None]], count: int = ORDERS_PER_CASE
) -> list[Answer]:
    """Place `count` orders at a fixed rate from several customers; run `disruption` a third of
    the way in, beside the load. Each order is sent on time, whatever the earlier ones are doing."""
    customers = itertools.cycle([f"chaos-{uuid.uuid4().hex[:8]}" for _ in range(CUSTOMERS)])
    tokens: dict[str, str] = {}
    skus = itertools.cycle([str(product["sku"]) for product in CATALOG])
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30, limits=limits, trust_env=False) as client:
        started = time.monotonic()
        placing: list[asyncio.Task[Answer]] = []
        breaking: asyncio.Task[None] | None = None
        for number in range(count):
            await asyncio.sleep(max(0.0, started + number / ORDERS_PER_SECOND - time.monotonic()))
            if number == count // 3:
                breaking = asyncio.create_task(disruption())
            customer = next(customers)
            token = tokens.setdefault(customer, customer_token(customer))
            body = {"customer_id": customer, "items": [{"sku": next(skus), "quantity": 1 + number % 3}]}
            placing.append(asyncio.create_task(_place(client, body, token)))
        answers = await asyncio.gather(*placing)
        if breaking is not None:
            await breaking
    return list(answers)


async def _place(client: httpx.AsyncClient, body: Mapping[str, object], token: str) -> Answer:
    try:
        response = await client.post("/v1/orders", json=body, headers=bearer(token))
    except httpx.TransportError:
        return Answer(0, None, None, "")
    payload = response.json()
    return Answer(
        response.status_code, payload.get("order_id"), payload.get("code"), response.headers.get("content-type", "")
    )


@dataclass
class Reconciliation:
    accepted: set[str]
    stored: set[str] = field(default_factory=set)
    published: int = 0
    unpublished: int = 0
    awarded: int = 0
    duplicates: int = 0
    unbalanced_customers: list[str] = field(default_factory=list)
    unconserved_skus: list[str] = field(default_factory=list)
    still_reserved: int = 0
    confirmed_mismatch: list[str] = field(default_factory=list)
    consumers_behind: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        """Accepted orders not stored, plus stored orders whose event was never published or awarded."""
        return len(self.accepted - self.stored) + self.unpublished + (len(self.stored) - self.awarded)

    def line(self, case: str, before: "Reconciliation") -> str:
        """This case's share: what was published and awarded since `before`, the count at its start."""
        return (
            f"{case}: orders {len(self.accepted - before.accepted)}, published {self.published - before.published}, "
            f"awarded {self.awarded - before.awarded}, duplicates {self.duplicates}, lost {self.lost}"
        )

    @property
    def settled(self) -> bool:
        """Everything caught up: nothing pending anywhere, every stored order awarded."""
        return (
            self.unpublished == 0
            and self.awarded >= len(self.stored)
            and self.still_reserved == 0
            and not any(pending or unacked for pending, unacked in self.consumers_behind.values())
        )

    def assert_exactly_once(self) -> None:
        assert self.accepted <= self.stored, f"accepted but not stored: {sorted(self.accepted - self.stored)[:5]}"
        assert self.unpublished == 0
        assert self.published == len(self.stored)
        assert self.awarded == len(self.stored)
        assert self.duplicates == 0
        assert self.lost == 0
        assert not self.unbalanced_customers
        assert not self.unconserved_skus
        assert self.still_reserved == 0
        assert not self.confirmed_mismatch, self.confirmed_mismatch
        assert not any(pending or unacked for pending, unacked in self.consumers_behind.values())


def accepted_orders(answers: list[Answer]) -> set[str]:
    return {answer.order_id for answer in answers if answer.status == 201 and answer.order_id}


async def reconcile(pipeline: Pipeline, accepted: set[str], *, within: float = SETTLE_WITHIN) -> Reconciliation:
    """Wait (with a deadline) until the pipeline has caught up with every order it `accepted`
    (all cases so far: the counts cover the whole databases), then count everything once more."""
    engines = {name: create_engine(pipeline.infra.postgres_url, db) for name, db in pipeline.databases.items()}
    try:

        async def count() -> Reconciliation:
            return await _count(pipeline, engines, accepted)

        try:
            return await eventually(count, lambda counted: counted.settled, within=within, what="the pipeline settled")
        except AssertionError:
            return await count()  # report what is off, not just that it is late
    finally:
        await asyncio.gather(*(engine.dispose() for engine in engines.values()))


async def _count(pipeline: Pipeline, engines: dict[str, AsyncEngine], accepted: set[str]) -> Reconciliation:
    counted = Reconciliation(accepted)
    async with engines["orders"].connect() as orders:
        counted.stored = {str(row[0]) for row in await orders.execute(text("SELECT order_id FROM orders"))}
        events = (await orders.execute(text(_OUTBOX_COUNTS))).one()
        ordered: dict[str, int] = dict(
            (await orders.execute(text("SELECT sku, sum(quantity) FROM order_lines GROUP BY sku"))).all()
        )
    counted.published, counted.unpublished, duplicate_events = (int(value) for value in events)
    async with engines["loyalty"].connect() as loyalty:
        per_order = (
            await loyalty.execute(
                text("SELECT count(DISTINCT order_id), count(*) - count(DISTINCT order_id) FROM ledger")
            )
        ).one()
        counted.unbalanced_customers = [row[0] for row in await loyalty.execute(text(_UNBALANCED_CUSTOMERS))]
    counted.awarded = int(per_order[0])
    counted.duplicates = int(per_order[1]) + duplicate_events
    counted.unconserved_skus = [stock.sku for stock in await unconserved_stock(engines["inventory"])]
    async with engines["inventory"].connect() as inventory:
        counted.still_reserved = int(
            await inventory.scalar(text("SELECT count(*) FROM reservations WHERE status = 'RESERVED'")) or 0
        )
        confirmed: dict[str, int] = dict((await inventory.execute(text(_CONFIRMED_UNITS))).all())
        mismatched = [
            sku for sku in set(ordered) | set(confirmed) if int(ordered.get(sku, 0)) != int(confirmed.get(sku, 0))
        ]
        # Say which orders, so that a failure can be followed up.
        reservations = (
            {str(order_id): (status, units) for order_id, status, units in await inventory.execute(text(_RESERVATIONS))}
            if mismatched
            else {}
        )
    counted.confirmed_mismatch = [
        f"{sku}: ordered {ordered.get(sku, 0)}, confirmed {confirmed.get(sku, 0)}" for sku in mismatched
    ] + _not_confirmed_alike(counted.stored, reservations)
    counted.consumers_behind = await _consumers_behind(pipeline)
    return counted


def _not_confirmed_alike(stored: set[str], reservations: dict[str, tuple[str, int]]) -> list[str]:
    """Stored orders whose reservation is not CONFIRMED, and CONFIRMED reservations of no stored order
    (nothing to say without `reservations`: the units matched)."""
    if not reservations:
        return []
    described = []
    for order_id in sorted(stored):
        status, units = reservations.get(order_id, ("no reservation", 0))
        if status != "CONFIRMED":
            described.append(f"order {order_id}: {status}, {units} units")
    for order_id, (status, units) in reservations.items():
        if status == "CONFIRMED" and order_id not in stored:
            described.append(f"reservation {order_id} (CONFIRMED, {units} units) of no stored order")
    return described


async def _consumers_behind(pipeline: Pipeline) -> dict[str, tuple[int, int]]:
    """Each durable consumer's (messages not yet delivered, delivered but not acked)."""
    connection = await nats.connect(pipeline.nats_url)
    try:
        js = connection.jetstream()
        behind = {}
        for durable in (pipeline.consumer, pipeline.inventory_consumer):
            info = await js.consumer_info(ORDERS_STREAM, durable)
            behind[durable] = (int(info.num_pending or 0), int(info.num_ack_pending or 0))
        return behind
    finally:
        await connection.close()
