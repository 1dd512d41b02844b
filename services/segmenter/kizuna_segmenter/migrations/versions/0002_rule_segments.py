"""Rule segments: what the segmenter knows of every customer (traits, consent, events) and the
segments defined over it, with their members.

Revision ID: segmenter_0002
Revises: segmenter_0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "segmenter_0002"
down_revision: str | None = "segmenter_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "seg_traits",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", JSONB, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
    )
    op.create_table(
        "seg_consent",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("channel", sa.Text, primary_key=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
    )
    op.create_table(
        "seg_events",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("properties", JSONB, nullable=False),
    )
    op.create_index(
        "seg_events_customer", "seg_events", ["workspace_id", "customer_id", "name", "occurred_at"]
    )
    op.create_table(
        "seg_segments",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("conditions", JSONB, nullable=False),
        sa.Column("time_based", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    )
    op.create_table(
        "seg_memberships",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("segment_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("member", sa.Boolean, nullable=False),
        sa.Column("since", TS, nullable=False),
        sa.Column("changes", sa.Integer, nullable=False),
    )
    op.create_index(
        "seg_memberships_members",
        "seg_memberships",
        ["workspace_id", "segment_id", "customer_id"],
        postgresql_where=sa.text("member"),
    )


def downgrade() -> None:
    for table in (
        "seg_memberships",
        "seg_segments",
        "seg_events",
        "seg_consent",
        "seg_traits",
    ):
        op.drop_table(table)
