"""Rule segments: keep each segment's members current and announce every entry and exit.

Membership is re-evaluated in SQL for the customers a batch of events touched (real time),
for everyone when a segment is created or changed, and on every sweep for segments whose
conditions depend on the passing of time. Changes go to the outbox in the same transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna import topics
from kizuna.envelope import Envelope
from kizuna_segmenter import engagement
from kizuna_segmenter.adapters import store
from kizuna_segmenter.domain.conditions import compile_conditions


@dataclass(frozen=True)
class Segment:
    id: str
    name: str
    conditions: dict[str, Any]
    time_based: bool


async def segments_of(
    conn: AsyncConnection, workspace_id: str, *, time_based_only: bool = False
) -> list[Segment]:
    rows = await conn.execute(
        sa.text(
            "SELECT id, name, conditions, time_based FROM seg_segments WHERE workspace_id = :ws"
            " AND (time_based OR NOT :time_based_only) ORDER BY id"
        ),
        {"ws": workspace_id, "time_based_only": time_based_only},
    )
    return [Segment(r.id, r.name, r.conditions, r.time_based) for r in rows]


async def matching(
    conn: AsyncConnection,
    workspace_id: str,
    conditions: dict[str, Any],
    now: datetime,
    customer_ids: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[str]:
    compiled = compile_conditions(conditions)
    params: dict[str, Any] = {**compiled.params, "ws": workspace_id, "now": now}
    if ":half_life" in compiled.sql:
        params["half_life"] = (await engagement.settings_of(conn, workspace_id)).half_life_days
    sql = f"SELECT c.customer_id FROM seg_customers c WHERE c.workspace_id = :ws AND {compiled.sql}"  # noqa: S608
    if customer_ids is not None:
        sql += " AND c.customer_id = ANY(CAST(:ids AS text[]))"
        params["ids"] = list(customer_ids)
    sql += " ORDER BY c.customer_id"
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = limit
    return [row.customer_id for row in await conn.execute(sa.text(sql), params)]


def _change(
    workspace_id: str,
    segment: Segment,
    customer_id: str,
    number: int,
    entered: bool,
    now: datetime,
    initial: bool,
) -> Envelope:
    kind = "entered" if entered else "exited"
    return Envelope.new(
        f"segment.{kind}",
        workspace_id,
        customer_id,
        {
            "segment_id": segment.id,
            "segment_name": segment.name,
            "kind": "rule",
            **({"initial": True} if initial else {}),
        },
        occurred_at=now,
        event_id=f"rule:{segment.id}:{customer_id}:{number}:{kind}",
    )


async def apply(
    conn: AsyncConnection,
    workspace_id: str,
    segment: Segment,
    members: Iterable[str],
    now: datetime,
    among: Sequence[str] | None = None,
    *,
    initial: bool = False,
) -> int:
    """Makes ``members`` the segment's members (among ``among``, or everyone) and announces
    the difference. Returns how many entered or exited."""
    params: dict[str, Any] = {"ws": workspace_id, "seg": segment.id}
    sql = (
        "SELECT customer_id, member, changes FROM seg_memberships WHERE workspace_id = :ws"
        " AND segment_id = :seg"
    )
    if among is not None:
        sql += " AND customer_id = ANY(CAST(:ids AS text[]))"
        params["ids"] = list(among)
    current = {
        row.customer_id: row for row in await conn.execute(sa.text(sql + " FOR UPDATE"), params)
    }
    wanted = set(members)
    changes: list[tuple[str, bool, int]] = []
    for customer_id in sorted(wanted | {c for c, r in current.items() if r.member}):
        row = current.get(customer_id)
        is_member = row is not None and row.member
        should = customer_id in wanted
        if is_member != should:
            changes.append((customer_id, should, (row.changes if row else 0) + 1))
    if not changes:
        return 0
    await conn.execute(
        sa.text(
            "INSERT INTO seg_memberships AS m (workspace_id, segment_id, customer_id, member,"
            " since, changes) SELECT :ws, :seg, c, b, :now, n FROM unnest("
            " CAST(:customers AS text[]), CAST(:members AS boolean[]), CAST(:numbers AS integer[]))"
            " x(c, b, n) ON CONFLICT (workspace_id, segment_id, customer_id) DO UPDATE SET"
            " member = excluded.member, since = excluded.since, changes = excluded.changes"
        ),
        {
            "ws": workspace_id,
            "seg": segment.id,
            "now": now,
            "customers": [c for c, _, _ in changes],
            "members": [m for _, m, _ in changes],
            "numbers": [n for _, _, n in changes],
        },
    )
    await store.add_to_outbox(
        conn,
        topics.SEGMENT_CHANGES,
        [_change(workspace_id, segment, c, n, m, now, initial) for c, m, n in changes],
    )
    return len(changes)


async def reevaluate(
    conn: AsyncConnection,
    workspace_id: str,
    now: datetime,
    customer_ids: Sequence[str] | None = None,
    *,
    time_based_only: bool = False,
) -> int:
    changed = 0
    for segment in await segments_of(conn, workspace_id, time_based_only=time_based_only):
        members = await matching(conn, workspace_id, segment.conditions, now, customer_ids)
        changed += await apply(conn, workspace_id, segment, members, now, customer_ids)
    return changed


async def remove(conn: AsyncConnection, workspace_id: str, segment: Segment, now: datetime) -> int:
    """A deleted segment: every member exits. Membership rows stay (as non-members) so that a
    segment created again under the same id announces changes under new ids."""
    changed = await apply(conn, workspace_id, segment, [], now)
    await conn.execute(
        sa.text("DELETE FROM seg_segments WHERE workspace_id = :ws AND id = :seg"),
        {"ws": workspace_id, "seg": segment.id},
    )
    return changed
