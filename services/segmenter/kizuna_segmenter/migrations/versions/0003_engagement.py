"""Engagement (lead) score: points per event with time decay, and thresholds.

Revision ID: segmenter_0003
Revises: segmenter_0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "segmenter_0003"
down_revision: str | None = "segmenter_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "seg_customers",
        sa.Column("engagement_score", sa.Float, nullable=False, server_default="0"),
    )
    op.add_column("seg_customers", sa.Column("engagement_at", sa.DateTime(timezone=True)))
    op.create_table(
        "seg_score_settings",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("points", JSONB, nullable=False),
        sa.Column("half_life_days", sa.Float, nullable=False),
        sa.Column("thresholds", postgresql.ARRAY(sa.Float), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("seg_score_settings")
    op.drop_column("seg_customers", "engagement_at")
    op.drop_column("seg_customers", "engagement_score")
