"""The inventory database: the catalog with its stock, and one reservation per order.

The CHECK on `products.available` is the last line of defence against overselling: even a wrong
UPDATE could not take stock below zero. Stock is conserved (stock_conservation): for every
product, available + reserved + confirmed == received."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Index, String, func, text
from sqlmodel import Field, SQLModel


class ReservationStatus(StrEnum):
    # Stock held for an order that may not exist yet; expires unless confirmed within the TTL.
    RESERVED = "RESERVED"
    # The order exists (inventory consumed its OrderCreated): the stock is sold, for good.
    CONFIRMED = "CONFIRMED"
    # Stock given back on request, or a tombstone: released before it was ever reserved.
    RELEASED = "RELEASED"
    # Never confirmed within the TTL (the orders process died before recording the order):
    # the sweeper gave the stock back.
    EXPIRED = "EXPIRED"


class Product(SQLModel, table=True):
    __tablename__ = "products"
    __table_args__ = (CheckConstraint("available >= 0", name="available_not_negative"),)

    sku: str = Field(primary_key=True, max_length=64)
    name: str
    price_cents: int = Field(sa_type=BigInteger)
    available: int
    # Every unit this product ever received: the catalog's stock, plus later restocks.
    received: int


class Reservation(SQLModel, table=True):
    """One row per order id, whatever happened to it: the primary key is the idempotency key."""

    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint("status IN ('RESERVED', 'CONFIRMED', 'RELEASED', 'EXPIRED')", name="status_known"),
        # What the sweeper looks for: reservations still held, oldest first.
        Index("reservations_held_since", "created_at", postgresql_where=text("status = 'RESERVED'")),
    )

    order_id: uuid.UUID = Field(primary_key=True)
    status: ReservationStatus = Field(sa_type=String(16))
    created_at: datetime = Field(
        sa_type=DateTime(timezone=True),
        sa_column_kwargs={"server_default": func.now()},
    )


class ReservationLine(SQLModel, table=True):
    """What a reservation took, with the price the order is charged."""

    __tablename__ = "reservation_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    order_id: uuid.UUID = Field(primary_key=True, foreign_key="reservations.order_id")
    sku: str = Field(primary_key=True, max_length=64, foreign_key="products.sku")
    quantity: int
    unit_price_cents: int = Field(sa_type=BigInteger)
