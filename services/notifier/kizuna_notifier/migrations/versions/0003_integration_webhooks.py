"""Integration webhooks: endpoints, the messages kept for them, one delivery per endpoint and
message (pending, succeeded or dead), and every attempt.

Revision ID: notifier_0003
Revises: notifier_0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision: str = "notifier_0003"
down_revision: str | None = "notifier_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "nt_endpoints",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("workspace_id", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("event_types", ARRAY(sa.Text), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("disabled_reason", sa.Text),
        sa.Column("disabled_at", TS),
        sa.Column("secrets", JSONB, nullable=False),  # [{secret, expires_at}], newest first
        sa.Column("failing_since", TS),
        sa.Column("last_success_at", TS),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
    )
    op.create_index("nt_endpoints_workspace", "nt_endpoints", ["workspace_id"])
    op.create_table(
        "nt_webhook_messages",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("customer_id", sa.Text),  # erasure deletes the person's messages
        sa.Column("body", sa.Text, nullable=False),  # the exact JSON that is signed and sent
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
    )
    op.create_index(
        "nt_webhook_messages_time", "nt_webhook_messages", ["workspace_id", "occurred_at"]
    )
    op.create_index(
        "nt_webhook_messages_customer", "nt_webhook_messages", ["workspace_id", "customer_id"]
    )
    op.create_table(
        "nt_webhook_deliveries",
        sa.Column("endpoint_id", sa.Text, primary_key=True),
        sa.Column("message_id", sa.Text, primary_key=True),
        sa.Column("workspace_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),  # pending, succeeded, dead
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TS),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
    )
    op.create_index(
        "nt_webhook_deliveries_due",
        "nt_webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "nt_webhook_deliveries_dead",
        "nt_webhook_deliveries",
        ["endpoint_id"],
        postgresql_where=sa.text("status = 'dead'"),
    )
    op.create_table(
        "nt_webhook_attempts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("endpoint_id", sa.Text, nullable=False),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("attempted_at", TS, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("response", sa.Text, nullable=False, server_default=""),
        sa.Column("error", sa.Text),
    )
    op.create_index("nt_webhook_attempts_endpoint", "nt_webhook_attempts", ["endpoint_id", "id"])


def downgrade() -> None:
    for table in (
        "nt_webhook_attempts",
        "nt_webhook_deliveries",
        "nt_webhook_messages",
        "nt_endpoints",
    ):
        op.drop_table(table)
