"""Templates, the sends ledger, the local mailbox (dev), the consent and suppression mirror,
the outbox of delivery outcomes.

Revision ID: notifier_0001
Revises:
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "notifier_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")
TS = sa.DateTime(timezone=True)
EMPTY = sa.text("'{}'::jsonb")


def upgrade() -> None:
    op.create_table(
        "nt_templates",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("body", JSONB, nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
    )
    op.create_table(
        "nt_sends",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("send_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("template", sa.Text),
        sa.Column("status", sa.Text, nullable=False),  # sending, sent, skipped, failed, retrying
        sa.Column("reason", sa.Text),
        sa.Column("message_id", sa.Text),
        sa.Column("recipient", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("request", JSONB, nullable=False, server_default=EMPTY),
        sa.Column("next_attempt_at", TS),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
    )
    op.create_index("nt_sends_customer", "nt_sends", ["workspace_id", "customer_id"])
    op.create_index(
        "nt_sends_retry",
        "nt_sends",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'retrying'"),
    )
    op.create_table(
        "nt_mailbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("workspace_id", sa.Text, nullable=False),
        sa.Column("send_id", sa.Text, nullable=False),
        sa.Column("message_id", sa.Text, nullable=False, unique=True),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
    )
    op.create_index("nt_mailbox_workspace", "nt_mailbox", ["workspace_id", "id"])
    op.create_table(
        "nt_consent",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("channel", sa.Text, primary_key=True),
        sa.Column("status", sa.Text, nullable=False),  # granted, revoked, suppressed
        sa.Column("at", sa.Text, nullable=False),  # newest statement wins (kizuna.consent)
        sa.Column("strict", sa.Boolean, nullable=False),  # an opt-out wins a tie
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
    )
    op.create_table(
        "nt_signing_secrets",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
    )
    op.create_table(
        "nt_outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False, unique=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("published_at", TS),
    )
    op.create_index(
        "nt_outbox_pending", "nt_outbox", ["id"], postgresql_where=sa.text("published_at IS NULL")
    )
    op.create_index(
        "nt_outbox_published",
        "nt_outbox",
        ["published_at"],
        postgresql_where=sa.text("published_at IS NOT NULL"),
    )


def downgrade() -> None:
    for table in (
        "nt_outbox",
        "nt_signing_secrets",
        "nt_consent",
        "nt_mailbox",
        "nt_sends",
        "nt_templates",
    ):
        op.drop_table(table)
