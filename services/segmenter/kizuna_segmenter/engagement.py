"""Keeps every customer's engagement score current and announces upward threshold crossings."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna import topics
from kizuna.envelope import Envelope
from kizuna_segmenter.adapters import customers, store
from kizuna_segmenter.domain.engagement import ScoreSettings, add, crossed, decayed

THRESHOLD_CROSSED = "score.threshold_crossed"


async def settings_of(conn: AsyncConnection, workspace_id: str) -> ScoreSettings:
    row = (
        await conn.execute(
            sa.text("SELECT * FROM seg_score_settings WHERE workspace_id = :ws"),
            {"ws": workspace_id},
        )
    ).one_or_none()
    if row is None:
        return ScoreSettings()
    return ScoreSettings(row.points, row.half_life_days, tuple(row.thresholds))


async def save_settings(conn: AsyncConnection, workspace_id: str, value: ScoreSettings) -> None:
    await conn.execute(
        sa.text(
            "INSERT INTO seg_score_settings (workspace_id, points, half_life_days, thresholds)"
            " VALUES (:ws, CAST(:points AS jsonb), :half_life, :thresholds)"
            " ON CONFLICT (workspace_id) DO UPDATE SET points = excluded.points,"
            " half_life_days = excluded.half_life_days, thresholds = excluded.thresholds"
        ),
        {
            "ws": workspace_id,
            "points": orjson.dumps(dict(value.points)).decode(),
            "half_life": value.half_life_days,
            "thresholds": list(value.thresholds),
        },
    )


async def score_events(
    conn: AsyncConnection, workspace_id: str, events: Sequence[Envelope], new_ids: set[str]
) -> int:
    """Adds the points of the events logged for the first time. Returns crossings announced."""
    settings = await settings_of(conn, workspace_id)
    earned: dict[str, list[tuple[str, datetime]]] = {}
    for event in events:
        name = customers.event_name(event)
        if event.id in new_ids and name is not None and settings.points.get(name):
            earned.setdefault(event.customer_key, []).append((name, event.occurred_at))
    if not earned:
        return 0
    rows = await conn.execute(
        sa.text(
            "SELECT customer_id, engagement_score, engagement_at FROM seg_customers"
            " WHERE workspace_id = :ws AND customer_id = ANY(CAST(:ids AS text[]))"
            " ORDER BY customer_id FOR UPDATE"
        ),
        {"ws": workspace_id, "ids": sorted(earned)},
    )
    updates, announcements = [], []
    for row in rows:
        score, as_of = add(
            row.engagement_score, row.engagement_at, earned[row.customer_id], settings
        )
        assert as_of is not None
        before = decayed(row.engagement_score, row.engagement_at, as_of, settings.half_life_days)
        updates.append((row.customer_id, score, as_of))
        for threshold in crossed(before, score, settings.thresholds):
            announcements.append(
                Envelope.new(
                    THRESHOLD_CROSSED,
                    workspace_id,
                    row.customer_id,
                    {"score": "engagement", "threshold": threshold, "value": round(score, 2)},
                    occurred_at=as_of,
                    event_id=f"score:{row.customer_id}:{threshold:g}:{as_of.isoformat()}",
                )
            )
    await conn.execute(
        sa.text(
            "UPDATE seg_customers c SET engagement_score = x.s, engagement_at = x.t"
            " FROM unnest(CAST(:ids AS text[]), CAST(:scores AS float8[]),"
            " CAST(:times AS timestamptz[])) x(i, s, t)"
            " WHERE c.workspace_id = :ws AND c.customer_id = x.i"
        ),
        {
            "ws": workspace_id,
            "ids": [u[0] for u in updates],
            "scores": [u[1] for u in updates],
            "times": [u[2] for u in updates],
        },
    )
    await store.add_to_outbox(conn, topics.SEGMENT_CHANGES, announcements)
    return len(announcements)
