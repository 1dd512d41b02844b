"""Journey results: what happened to each message after it was sent (delivered, bounced,
failed, opened, clicked, unsubscribed: the first of each), the winners of A/B splits,
and an index for per-journey reports over the step log.

Revision ID: journey_0002
Revises: journey_0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "journey_0002"
down_revision: str | None = "journey_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "jr_message_events",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("send_id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "jr_split_winners",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("journey_id", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("step_id", sa.Text, primary_key=True),
        sa.Column("branch", sa.Integer, nullable=False),
        sa.Column("figures", JSONB, nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("jr_steps_journey", "jr_steps", ["workspace_id", "journey_id", "outcome", "at"])


def downgrade() -> None:
    op.drop_index("jr_steps_journey", "jr_steps")
    op.drop_table("jr_split_winners")
    op.drop_table("jr_message_events")
