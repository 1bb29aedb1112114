"""orders: who holds each client request id while its order is being placed

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "order_requests",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("client_request_id", sa.String(length=128), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("placing_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("customer_id", "client_request_id"),
    )
    # The requests that placed their order before this table existed: placed (placing_until NULL).
    op.execute(
        "INSERT INTO order_requests (customer_id, client_request_id, order_id, placing_until) "
        "SELECT customer_id, client_request_id, order_id, NULL FROM orders WHERE client_request_id IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("order_requests")
