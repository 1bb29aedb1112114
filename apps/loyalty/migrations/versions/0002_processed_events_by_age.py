"""processed_events: index by processed_at, for the retention purge

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("processed_events_by_age", "processed_events", ["processed_at"])


def downgrade() -> None:
    op.drop_index("processed_events_by_age", table_name="processed_events")
