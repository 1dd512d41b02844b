"""Channel settings per workspace (sender address, LINE access token, rate limits) and the
rate-limit buckets.

Revision ID: notifier_0002
Revises: notifier_0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "notifier_0002"
down_revision: str | None = "notifier_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "nt_channels",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("channel", sa.Text, primary_key=True),
        sa.Column("config", JSONB, nullable=False),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.text("now()")),
    )
    op.create_table(
        "nt_rate_buckets",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("channel", sa.Text, primary_key=True),
        sa.Column("tat", sa.Float, nullable=False),  # epoch seconds (domain/rate.py)
    )


def downgrade() -> None:
    op.drop_table("nt_rate_buckets")
    op.drop_table("nt_channels")
