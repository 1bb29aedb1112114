"""The orders database: orders, their lines (priced by inventory at reservation time) and the
outbox of events that commit together with them.

An order placed with a client_request_id keeps it: the unique constraint on (customer_id,
client_request_id) lets a customer's request place one order, however often it is repeated and
however many copies of it race (placing_orders). Orders without one (NULL) are not constrained.
`order_requests` says which placement holds a request id: the one placing the order under
`order_id` until `placing_until`, or (placing_until NULL) the one that placed it.

`outbox.published_at` stays NULL until the broker acknowledged the event; the partial index
keeps the relay's "oldest pending first" query cheap however many published rows pile up, and
published rows are purged once older than ORDERFLOW_OUTBOX_RETENTION_SECONDS (outbox.py).

The classes are the schema (Alembic migrates from them). The service reads and writes the tables
with SQLAlchemy Core statements on a connection, never through an ORM session: `ORDERS`,
`ORDER_LINES` and `OUTBOX` at the end are the same tables as Core sees them."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Index, LargeBinary, String, Table, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

ONE_ORDER_PER_CLIENT_REQUEST = "orders_one_per_client_request"


class OrderStatus(StrEnum):
    CREATED = "CREATED"


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        # ListOrders: one customer's orders, newest first, paged by the keyset (created_at, order_id).
        Index("orders_by_customer_newest_first", "customer_id", text("created_at DESC"), text("order_id DESC")),
        CheckConstraint("total_cents >= 0", name="total_not_negative"),
        UniqueConstraint("customer_id", "client_request_id", name=ONE_ORDER_PER_CLIENT_REQUEST),
    )

    order_id: uuid.UUID = Field(primary_key=True)
    customer_id: str = Field(max_length=64)
    status: OrderStatus = Field(sa_type=String(16))
    total_cents: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    created_at: datetime = Field(sa_type=DateTime(timezone=True))
    client_request_id: str | None = Field(default=None, max_length=128)


class OrderLine(SQLModel, table=True):
    __tablename__ = "order_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    order_id: uuid.UUID = Field(primary_key=True, foreign_key="orders.order_id")
    sku: str = Field(primary_key=True, max_length=64)
    quantity: int
    unit_price_cents: int = Field(sa_type=BigInteger)


class OrderRequest(SQLModel, table=True):
    """A client request id's claim: only the placement that holds it may record an order for it."""

    __tablename__ = "order_requests"

    customer_id: str = Field(primary_key=True, max_length=64)
    client_request_id: str = Field(primary_key=True, max_length=128)
    # The order the holder reserves and records under.
    order_id: uuid.UUID
    # The holder may still be running until then (database time); NULL once its order is recorded.
    placing_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class OutboxEvent(SQLModel, table=True):
    """An event exactly as it will be published: NATS subject, CloudEvents headers, body."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("outbox_unpublished", "created_at", postgresql_where=text("published_at IS NULL")),
        # Housekeeping: published rows past their retention are found without reading the table.
        Index("outbox_published", "published_at", postgresql_where=text("published_at IS NOT NULL")),
    )

    # The event id: `ce-id` and, on its first publish, `Nats-Msg-Id`.
    id: uuid.UUID = Field(primary_key=True)
    # The order the event is about.
    aggregate_id: uuid.UUID
    event_type: str
    # The NATS subject it is published to.
    subject: str
    payload: bytes = Field(sa_type=LargeBinary)
    headers: dict[str, str] = Field(sa_type=JSONB)
    created_at: datetime = Field(sa_type=DateTime(timezone=True))
    published_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


ORDERS: Table = SQLModel.metadata.tables["orders"]
ORDER_LINES: Table = SQLModel.metadata.tables["order_lines"]
OUTBOX: Table = SQLModel.metadata.tables["outbox"]
ORDER_REQUESTS: Table = SQLModel.metadata.tables["order_requests"]
