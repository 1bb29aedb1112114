"""ledger: the balance right after each entry, for the PointsAwarded event

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

Entries written before this revision get the running sum of the customer's points in ledger
order (the identity column): the last one equals the balance; the ones before it are exact unless
two awards of one customer committed in the other order than they were inserted.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ledger", sa.Column("balance_after", sa.BigInteger(), nullable=True))
    op.execute(
        """
        UPDATE ledger SET balance_after = running.total
          FROM (SELECT id, sum(points) OVER (PARTITION BY customer_id ORDER BY id) AS total FROM ledger) AS running
         WHERE ledger.id = running.id
        """
    )
    op.alter_column("ledger", "balance_after", nullable=False)


def downgrade() -> None:
    op.drop_column("ledger", "balance_after")
