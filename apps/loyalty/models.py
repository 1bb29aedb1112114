"""Loyalty's tables: the dedupe table, the ledger (one row per awarded order) and balances."""

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class ProcessedEvent(SQLModel, table=True):
    """One row per event id (ce-id) already handled; written in the same transaction as its effect."""

    __tablename__ = "processed_events"
    # Housekeeping purges rows older than the dedupe retention (dedupe.py) without a full scan.
    __table_args__ = (sa.Index("processed_events_by_age", "processed_at"),)

    event_id: str = Field(primary_key=True)
    processed_at: datetime = Field(
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())
    )


class LedgerEntry(SQLModel, table=True):
    """Why a balance is what it is: the points each order earned."""

    __tablename__ = "ledger"

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True))
    customer_id: str = Field(index=True)
    order_id: uuid.UUID
    event_id: str = Field(unique=True)
    points: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    # The customer's balance right after this entry: what its PointsAwarded event announces, the
    # same when a redelivery announces it again.
    balance_after: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    created_at: datetime = Field(
        sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())
    )


class Balance(SQLModel, table=True):
    __tablename__ = "balances"

    customer_id: str = Field(primary_key=True)
    points: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    orders_awarded: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
