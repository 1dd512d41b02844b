"""SQL of journey results: runs by holdout and variant, step outcomes and what became of the
messages, day by day. The variant of a run is the branch its first split logged."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

RUNS = (
    "SELECT r.run_id, r.version, r.holdout, r.status, r.converted_at, r.entered_at,"
    " (SELECT s.detail->>'branch' FROM jr_steps s WHERE s.run_id = r.run_id"
    " AND s.step_type = 'split' AND s.outcome = 'branched' ORDER BY s.seq LIMIT 1) AS variant,"
    " (SELECT CAST(s.detail->>'value' AS float) FROM jr_steps s WHERE s.run_id = r.run_id"
    " AND s.outcome = 'converted' LIMIT 1) AS value"
    " FROM jr_runs r WHERE r.workspace_id = :ws AND r.journey_id = :j"
    " AND (CAST(:v AS int) IS NULL OR r.version = :v)"
    " AND r.entered_at >= :since AND r.entered_at < :until"
)


def _scope(
    workspace_id: str, journey_id: str, version: int | None, since: datetime, until: datetime
) -> dict[str, Any]:
    return {"ws": workspace_id, "j": journey_id, "v": version, "since": since, "until": until}


async def run_groups(conn: AsyncConnection, **scope: Any) -> list[Any]:
    """Per (holdout, variant, status): runs, conversions, revenue."""
    rows = await conn.execute(
        sa.text(
            f"WITH r AS ({RUNS}) SELECT holdout, variant, status, count(*) AS runs,"  # noqa: S608
            " count(converted_at) AS converted,"
            " coalesce(sum(value) FILTER (WHERE converted_at IS NOT NULL), 0) AS revenue"
            " FROM r GROUP BY holdout, variant, status"
        ),
        _scope(**scope),
    )
    return list(rows.all())


async def step_outcomes(conn: AsyncConnection, **scope: Any) -> list[Any]:
    """Per (step, variant, outcome, reason): how many executions, for runs in scope."""
    rows = await conn.execute(
        sa.text(
            f"WITH r AS ({RUNS}) SELECT s.step_id, r.variant, s.outcome,"  # noqa: S608
            " s.detail->>'reason' AS reason, count(*) AS n FROM r JOIN jr_steps s"
            " ON s.run_id = r.run_id AND s.outcome IN ('sent', 'skipped')"
            " GROUP BY s.step_id, r.variant, s.outcome, s.detail->>'reason'"
        ),
        _scope(**scope),
    )
    return list(rows.all())


async def message_outcomes(conn: AsyncConnection, **scope: Any) -> list[Any]:
    """Per (step, variant, kind): messages delivered, opened, clicked…"""
    rows = await conn.execute(
        sa.text(
            f"WITH r AS ({RUNS}) SELECT s.step_id, r.variant, m.kind, count(*) AS n"  # noqa: S608
            " FROM r JOIN jr_steps s ON s.run_id = r.run_id AND s.outcome = 'sent'"
            " JOIN jr_message_events m ON m.workspace_id = :ws"
            " AND m.send_id = s.detail->>'send_id'"
            " GROUP BY s.step_id, r.variant, m.kind"
        ),
        _scope(**scope),
    )
    return list(rows.all())


async def daily(conn: AsyncConnection, timezone: str, **scope: Any) -> list[Any]:
    """Per day in ``timezone``: runs entered, conversions and revenue (on the day they
    happened), messages sent, and first deliveries, opens, clicks, unsubscribes."""
    rows = await conn.execute(
        sa.text(
            f"WITH r AS ({RUNS}), facts AS ("  # noqa: S608
            " SELECT r.entered_at AS at, 'entered' AS kind, 0.0 AS value FROM r"
            " UNION ALL SELECT r.converted_at, 'converted', coalesce(r.value, 0) FROM r"
            " WHERE r.converted_at IS NOT NULL"
            " UNION ALL SELECT s.at, 'sent', 0 FROM r JOIN jr_steps s ON s.run_id = r.run_id"
            " AND s.outcome = 'sent'"
            " UNION ALL SELECT m.at, m.kind, 0 FROM r JOIN jr_steps s ON s.run_id = r.run_id"
            " AND s.outcome = 'sent' JOIN jr_message_events m ON m.workspace_id = :ws"
            " AND m.send_id = s.detail->>'send_id')"
            " SELECT CAST(timezone(:tz, at) AS date) AS day, kind, count(*) AS n,"
            " sum(value) AS value FROM facts GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        {**_scope(**scope), "tz": timezone},
    )
    return list(rows.all())


async def winners(
    conn: AsyncConnection, workspace_id: str, keys: list[tuple[str, int]]
) -> dict[tuple[str, int, str], int]:
    """Decided A/B winners: (journey, version, step) → branch index."""
    if not keys:
        return {}
    rows = await conn.execute(
        sa.text(
            "SELECT journey_id, version, step_id, branch FROM jr_split_winners"
            " WHERE workspace_id = :ws AND (journey_id, version) IN"
            " (SELECT * FROM unnest(CAST(:j AS text[]), CAST(:v AS int[])))"
        ),
        {"ws": workspace_id, "j": [k[0] for k in keys], "v": [k[1] for k in keys]},
    )
    return {(r.journey_id, r.version, r.step_id): r.branch for r in rows.all()}


async def test_figures(
    conn: AsyncConnection,
    workspace_id: str,
    journey_id: str,
    version: int,
    step_id: str,
    metric: str,
) -> list[Any]:
    """Per branch, over the test share's runs: runs, and how many of them ``metric``
    (opened or clicked a message of the journey sent after the split, or converted)."""
    if metric == "converted":
        success = "count(*) FILTER (WHERE r.converted_at IS NOT NULL)"
    else:
        success = (
            "count(*) FILTER (WHERE EXISTS (SELECT 1 FROM jr_steps s JOIN jr_message_events m"
            " ON m.workspace_id = s.workspace_id AND m.send_id = s.detail->>'send_id'"
            " AND m.kind = :metric WHERE s.run_id = r.run_id AND s.outcome = 'sent'))"
        )
    rows = await conn.execute(
        sa.text(
            f"SELECT CAST(b.detail->>'index' AS int) AS branch, count(*) AS runs,"  # noqa: S608
            f" {success} AS successes FROM jr_steps b JOIN jr_runs r ON r.run_id = b.run_id"
            " WHERE b.workspace_id = :ws AND b.journey_id = :j AND b.version = :v"
            " AND b.step_id = :s AND b.outcome = 'branched'"
            " AND (b.detail->>'test') = 'true' GROUP BY 1 ORDER BY 1"
        ),
        {"ws": workspace_id, "j": journey_id, "v": version, "s": step_id, "metric": metric},
    )
    return list(rows.all())


async def record_winner(
    conn: AsyncConnection,
    workspace_id: str,
    journey_id: str,
    version: int,
    step_id: str,
    branch: int,
    figures: dict[str, Any],
    decided_at: datetime,
) -> int:
    """Stores the winner unless another replica decided first; returns the one that holds."""
    await conn.execute(
        sa.text(
            "INSERT INTO jr_split_winners (workspace_id, journey_id, version, step_id, branch,"
            " figures, decided_at) VALUES (:ws, :j, :v, :s, :b, CAST(:f AS jsonb), :at)"
            " ON CONFLICT DO NOTHING"
        ),
        {
            "ws": workspace_id,
            "j": journey_id,
            "v": version,
            "s": step_id,
            "b": branch,
            "f": orjson.dumps(figures).decode(),
            "at": decided_at,
        },
    )
    held: int = await conn.scalar(
        sa.text(
            "SELECT branch FROM jr_split_winners WHERE workspace_id = :ws AND journey_id = :j"
            " AND version = :v AND step_id = :s"
        ),
        {"ws": workspace_id, "j": journey_id, "v": version, "s": step_id},
    )
    return held


async def decided_tests(
    conn: AsyncConnection, workspace_id: str, journey_id: str, version: int | None
) -> list[Any]:
    rows = await conn.execute(
        sa.text(
            "SELECT version, step_id, branch, figures, decided_at FROM jr_split_winners"
            " WHERE workspace_id = :ws AND journey_id = :j"
            " AND (CAST(:v AS int) IS NULL OR version = :v) ORDER BY version, step_id"
        ),
        {"ws": workspace_id, "j": journey_id, "v": version},
    )
    return list(rows.all())
