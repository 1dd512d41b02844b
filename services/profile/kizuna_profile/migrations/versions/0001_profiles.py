"""Profiles: customers, identifiers, event history, orders, merges, erasures, segment mirror,
imports.

Revision ID: profile_0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "profile_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "profile_customers",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
        sa.Column("events_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("traits", JSONB, nullable=False, server_default="{}"),
        sa.Column("record", JSONB, nullable=False, server_default="{}"),
        sa.Column("orders_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("revenue_total", sa.Numeric, nullable=False, server_default="0"),
        sa.Column("first_order_at", TS),
        sa.Column("last_order_at", TS),
        sa.Column("last_email_opened_at", TS),
        sa.Column("last_email_clicked_at", TS),
    )
    op.execute(
        "CREATE INDEX profile_customers_traits ON profile_customers"
        " USING gin (traits jsonb_path_ops)"
    )
    op.create_index(
        "profile_customers_first_seen", "profile_customers", ["workspace_id", "first_seen_at"]
    )
    op.create_table(
        "profile_identifiers",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
    )
    op.create_index(
        "profile_identifiers_customer", "profile_identifiers", ["workspace_id", "customer_id"]
    )
    op.create_table(
        "profile_events",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
    )
    op.create_index(
        "profile_events_timeline",
        "profile_events",
        ["workspace_id", "customer_id", sa.text("occurred_at DESC"), sa.text("event_id DESC")],
    )
    op.execute("CREATE INDEX profile_events_age ON profile_events USING brin (occurred_at)")
    op.create_table(
        "profile_orders",
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
    op.create_index("profile_orders_customer", "profile_orders", ["workspace_id", "customer_id"])
    op.create_index("profile_orders_time", "profile_orders", ["workspace_id", "ordered_at"])
    op.create_table(
        "profile_merges",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("absorbed_id", sa.Text, primary_key=True),
        sa.Column("survivor_id", sa.Text, nullable=False),
        sa.Column("cause_event_id", sa.Text, nullable=False),
        sa.Column("merged_at", TS, nullable=False, server_default=NOW),
    )
    op.create_index("profile_merges_survivor", "profile_merges", ["workspace_id", "survivor_id"])
    op.create_index("profile_merges_cause", "profile_merges", ["workspace_id", "cause_event_id"])
    op.create_table(
        "profile_erasures",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("key_hash", sa.Text, primary_key=True),
        sa.Column("erased_at", TS, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
    )
    op.create_table(
        "profile_erased_customers",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("erased_at", TS, nullable=False),
        sa.Column("absorbed_ids", postgresql.ARRAY(sa.Text), nullable=False),
    )
    op.create_table(
        "profile_segments",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("segment_id", sa.Text, primary_key=True),
        sa.Column("segment_name", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("member", sa.Boolean, nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("details", JSONB, nullable=False, server_default="{}"),
    )
    op.create_index(
        "profile_segments_members",
        "profile_segments",
        ["workspace_id", "segment_id", "customer_id"],
        postgresql_where=sa.text("member"),
    )
    op.create_table(
        "profile_imports",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("workspace_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("format", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.Column("finished_at", TS),
        sa.Column("rows_total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rows_imported", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rows_rejected", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rejected", JSONB, nullable=False, server_default="[]"),
        sa.Column("error", sa.Text),
    )
    op.create_index("profile_imports_workspace", "profile_imports", ["workspace_id", "created_at"])


def downgrade() -> None:
    for table in (
        "profile_imports",
        "profile_segments",
        "profile_erased_customers",
        "profile_erasures",
        "profile_merges",
        "profile_orders",
        "profile_events",
        "profile_identifiers",
        "profile_customers",
    ):
        op.drop_table(table)
