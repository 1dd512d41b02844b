"""RFM: orders, customers' facts and scores, boundaries, settings, tier history, outbox.

Revision ID: segmenter_0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "segmenter_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")
TS = sa.DateTime(timezone=True)
FLOATS = postgresql.ARRAY(sa.Float)


def upgrade() -> None:
    op.create_table(
        "seg_orders",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("order_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("ordered_at", TS),
        sa.Column("amount", sa.Numeric),
        sa.Column("currency", sa.Text),
        sa.Column("event_id", sa.Text),
        sa.Column("refunded_amount", sa.Numeric, nullable=False, server_default="0"),
        sa.Column("fully_refunded", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("seg_orders_customer", "seg_orders", ["workspace_id", "customer_id"])
    op.create_table(
        "seg_seen_events",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("seen_at", TS, nullable=False, server_default=NOW),
    )
    op.create_table(
        "seg_customers",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("first_order_at", TS),
        sa.Column("last_order_at", TS),
        sa.Column("frequency", sa.Integer, nullable=False, server_default="0"),
        sa.Column("monetary", sa.Numeric, nullable=False, server_default="0"),
        sa.Column("lifetime_orders", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lifetime_revenue", sa.Numeric, nullable=False, server_default="0"),
        sa.Column("recency_score", sa.SmallInteger),
        sa.Column("frequency_score", sa.SmallInteger),
        sa.Column("monetary_score", sa.SmallInteger),
        sa.Column("tier", sa.Text),
        sa.Column("tier_since", TS),
        sa.Column("changes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("scored_at", TS),
        sa.Column("review_at", TS),
    )
    op.create_index(
        "seg_customers_review",
        "seg_customers",
        ["review_at"],
        postgresql_where=sa.text("review_at IS NOT NULL"),
    )
    op.create_index("seg_customers_tier", "seg_customers", ["workspace_id", "tier"])
    op.create_table(
        "seg_bounds",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("recency_days", FLOATS),
        sa.Column("frequency", FLOATS),
        sa.Column("monetary", FLOATS),
        sa.Column("buyers", sa.Integer, nullable=False),
        sa.Column("computed_at", TS, nullable=False),
    )
    op.create_table(
        "seg_settings",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("window_days", sa.Integer, nullable=False),
        sa.Column("tiers", JSONB, nullable=False),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
    )
    op.create_table(
        "seg_tier_history",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("from_tier", sa.Text),
        sa.Column("to_tier", sa.Text),
        sa.Column("changed_at", TS, nullable=False),
    )
    op.create_index("seg_tier_history_time", "seg_tier_history", ["workspace_id", "changed_at"])
    op.create_table(
        "seg_outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False, unique=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("published_at", TS),
    )
    op.create_index(
        "seg_outbox_pending",
        "seg_outbox",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    for table in (
        "seg_outbox",
        "seg_tier_history",
        "seg_settings",
        "seg_bounds",
        "seg_customers",
        "seg_seen_events",
        "seg_orders",
    ):
        op.drop_table(table)
