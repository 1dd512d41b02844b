"""Journeys and versions, runs (with their timers), step log, trigger schedules, the customer
mirror, seen events, outbox, delivery settings.

Revision ID: journey_0001
Revises:
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision: str = "journey_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("now()")
TS = sa.DateTime(timezone=True)
EMPTY = sa.text("'{}'::jsonb")


def upgrade() -> None:
    op.create_table(
        "jr_journeys",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="draft"),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("template", sa.Text),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
    )
    op.create_table(
        "jr_versions",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("journey_id", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("definition", JSONB, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
    )
    op.create_table(
        "jr_runs",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("workspace_id", sa.Text, nullable=False),
        sa.Column("journey_id", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="active"),
        sa.Column("holdout", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("step", sa.Text),
        sa.Column("visits", JSONB, nullable=False, server_default=EMPTY),
        sa.Column("data", JSONB, nullable=False, server_default=EMPTY),
        sa.Column("due_at", TS),
        sa.Column("waiting_for", sa.Text),
        sa.Column("entered_at", TS, nullable=False),
        sa.Column("ended_at", TS),
        sa.Column("end_reason", sa.Text),
        sa.Column("converted_at", TS),
    )
    op.create_index(
        "jr_runs_live",
        "jr_runs",
        ["workspace_id", "journey_id", "customer_id"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index(
        "jr_runs_due", "jr_runs", ["due_at"], postgresql_where=sa.text("due_at IS NOT NULL")
    )
    op.create_index("jr_runs_journey", "jr_runs", ["workspace_id", "journey_id", "run_id"])
    op.create_index(
        "jr_runs_customer",
        "jr_runs",
        ["workspace_id", "customer_id", "journey_id", "entered_at"],
    )
    op.create_table(
        "jr_steps",
        sa.Column("execution_id", sa.Text, primary_key=True),
        sa.Column("outcome", sa.Text, primary_key=True),
        sa.Column("workspace_id", sa.Text, nullable=False),
        sa.Column("journey_id", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("step_id", sa.Text, nullable=False),
        sa.Column("step_type", sa.Text, nullable=False),
        sa.Column("category", sa.Text),
        sa.Column("detail", JSONB, nullable=False, server_default=EMPTY),
        sa.Column("at", TS, nullable=False),
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False),  # order within an instant
    )
    op.create_index("jr_steps_run", "jr_steps", ["run_id"])
    op.create_index("jr_steps_customer", "jr_steps", ["workspace_id", "customer_id"])
    op.create_index(
        "jr_steps_marketing_sent",
        "jr_steps",
        ["workspace_id", "customer_id", "at"],
        postgresql_where=sa.text("outcome = 'sent' AND category = 'marketing'"),
    )
    op.create_table(
        "jr_schedules",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("journey_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, primary_key=True),  # '' for the whole journey
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("data", JSONB, nullable=False, server_default=EMPTY),
    )
    op.create_index("jr_schedules_due", "jr_schedules", ["due_at"])
    op.create_index("jr_schedules_customer", "jr_schedules", ["workspace_id", "customer_id"])
    op.create_table(
        "jr_customers",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("traits", JSONB, nullable=False, server_default=EMPTY),
        sa.Column("trait_stamps", JSONB, nullable=False, server_default=EMPTY),
        sa.Column("consent", JSONB, nullable=False, server_default=EMPTY),
        sa.Column("suppressed", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("rfm", JSONB, nullable=False, server_default=EMPTY),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
    )
    op.create_table(
        "jr_segments",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("segment_id", sa.Text, primary_key=True),
        sa.Column("member", sa.Boolean, nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
    )
    op.create_index(
        "jr_segments_members",
        "jr_segments",
        ["workspace_id", "segment_id", "customer_id"],
        postgresql_where=sa.text("member"),
    )
    op.create_table(
        "jr_customer_events",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("event", sa.Text, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("last_at", TS, nullable=False),
    )
    op.create_table(
        "jr_seen_events",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("seen_at", TS, nullable=False, server_default=NOW),
    )
    op.create_index("jr_seen_events_age", "jr_seen_events", ["seen_at"])
    op.create_table(
        "jr_outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False, unique=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=NOW),
        sa.Column("published_at", TS),
    )
    op.create_index(
        "jr_outbox_pending", "jr_outbox", ["id"], postgresql_where=sa.text("published_at IS NULL")
    )
    op.create_index(
        "jr_outbox_published",
        "jr_outbox",
        ["published_at"],
        postgresql_where=sa.text("published_at IS NOT NULL"),
    )
    op.create_table(
        "jr_settings",
        sa.Column("workspace_id", sa.Text, primary_key=True),
        sa.Column("delivery", JSONB, nullable=False, server_default=EMPTY),
        sa.Column("updated_at", TS, nullable=False, server_default=NOW),
    )


def downgrade() -> None:
    for table in (
        "jr_settings",
        "jr_outbox",
        "jr_seen_events",
        "jr_customer_events",
        "jr_segments",
        "jr_customers",
        "jr_schedules",
        "jr_steps",
        "jr_runs",
        "jr_versions",
        "jr_journeys",
    ):
        op.drop_table(table)
