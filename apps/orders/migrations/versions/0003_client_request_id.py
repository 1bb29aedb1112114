"""orders: the client's request id, at most one order per customer and id

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("client_request_id", sa.String(length=128), nullable=True))
    op.create_unique_constraint("orders_one_per_client_request", "orders", ["customer_id", "client_request_id"])


def downgrade() -> None:
    op.drop_constraint("orders_one_per_client_request", "orders", type_="unique")
    op.drop_column("orders", "client_request_id")
