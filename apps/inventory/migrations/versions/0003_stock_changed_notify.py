"""stock changes notify: every change of a product's available stock, and every new product, sends
NOTIFY stock_changed with the product's SKU and its new level

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

Triggers, not code: whichever statement changes the stock (a reservation, a release, an expiry, a
restock, an operator's UPDATE), the watchers of live stock (inventory.stock_watch) hear of it from
the database itself, when the transaction commits and in commit order, on every replica. A
statement that leaves `available` as it was (a confirmation) notifies nothing.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The payload is JSON, {"sku": ..., "available": ...}: the level as this transaction left it, so a
    # listener needs no query per change (PostgreSQL delivers notifications in commit order, so the
    # last one heard for a SKU is its current level).
    op.execute(
        """
        CREATE FUNCTION notify_stock_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('stock_changed', json_build_object('sku', NEW.sku, 'available', NEW.available)::text);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER stock_changed AFTER UPDATE OF available ON products
        FOR EACH ROW WHEN (OLD.available IS DISTINCT FROM NEW.available)
        EXECUTE FUNCTION notify_stock_changed()
        """
    )
    op.execute(
        "CREATE TRIGGER product_added AFTER INSERT ON products FOR EACH ROW EXECUTE FUNCTION notify_stock_changed()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER product_added ON products")
    op.execute("DROP TRIGGER stock_changed ON products")
    op.execute("DROP FUNCTION notify_stock_changed()")
