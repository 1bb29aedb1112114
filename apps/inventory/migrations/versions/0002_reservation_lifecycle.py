"""reservation lifecycle: confirmed and expired reservations, received stock

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

Before this revision a held reservation was final (nothing confirmed or expired it), so every
reservation still RESERVED becomes CONFIRMED: the sweeper must not return the stock of orders
that were placed before it existed. `received` starts as what is on hand or held.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("reservations", "status", type_=sa.String(length=16), existing_nullable=False)
    op.drop_constraint("status_known", "reservations", type_="check")
    op.create_check_constraint(
        "status_known", "reservations", "status IN ('RESERVED', 'CONFIRMED', 'RELEASED', 'EXPIRED')"
    )
    op.execute("UPDATE reservations SET status = 'CONFIRMED' WHERE status = 'RESERVED'")
    op.create_index(
        "reservations_held_since", "reservations", ["created_at"], postgresql_where=sa.text("status = 'RESERVED'")
    )
    op.add_column("products", sa.Column("received", sa.Integer(), nullable=True))
    op.execute(
        """
        UPDATE products SET received = available + coalesce(
            (SELECT sum(lines.quantity)
               FROM reservation_lines AS lines JOIN reservations USING (order_id)
              WHERE lines.sku = products.sku AND reservations.status = 'CONFIRMED'),
            0)
        """
    )
    op.alter_column("products", "received", nullable=False)


def downgrade() -> None:
    op.drop_column("products", "received")
    op.drop_index("reservations_held_since", table_name="reservations")
    op.execute("UPDATE reservations SET status = 'RELEASED' WHERE status = 'EXPIRED'")
    op.execute("UPDATE reservations SET status = 'RESERVED' WHERE status = 'CONFIRMED'")
    op.drop_constraint("status_known", "reservations", type_="check")
    op.create_check_constraint("status_known", "reservations", "status IN ('RESERVED', 'RELEASED')")
    op.alter_column("reservations", "status", type_=sa.String(length=8), existing_nullable=False)
