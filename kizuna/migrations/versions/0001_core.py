"""Core plumbing: workspaces, API keys, the PostgreSQL event log.

Revision ID: core_0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "core_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("workspace_id", sa.Text, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("key_hash", sa.Text, nullable=False, unique=True),
        sa.Column("hint", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("kind IN ('write', 'admin')", name="api_keys_kind"),
    )
    op.create_index("api_keys_workspace", "api_keys", ["workspace_id"])

    op.create_table(
        "bus_topics",
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partitions", sa.Integer, nullable=False),
    )
    op.create_table(
        "bus_partitions",
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "bus_messages",
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("offset", sa.BigInteger, primary_key=True),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("headers", postgresql.JSONB),
        sa.Column("appended_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("bus_messages_appended_at", "bus_messages", ["appended_at"])
    op.create_table(
        "bus_group_offsets",
        sa.Column("group_id", sa.Text, primary_key=True),
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("committed", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "bus_group_members",
        sa.Column("group_id", sa.Text, primary_key=True),
        sa.Column("member_id", sa.Text, primary_key=True),
        sa.Column("topics", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )


def downgrade() -> None:
    for table in (
        "bus_group_members",
        "bus_group_offsets",
        "bus_messages",
        "bus_partitions",
        "bus_topics",
        "api_keys",
        "workspaces",
    ):
        op.drop_table(table)
