"""A mirror of the segmenter's published memberships and RFM scores, so a customer's record
can show them without reading another service's tables.

``segment.entered`` / ``segment.exited`` (docs/events.md): the newest change by event time
wins, so a late or repeated message never undoes a newer one."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna.envelope import Envelope

CHANGES = {"segment.entered": True, "segment.exited": False}


async def apply_changes(conn: AsyncConnection, events: Sequence[Envelope]) -> None:
    newest: dict[tuple[str, str, str], Envelope] = {}
    for event in events:
        segment_id = event.payload.get("segment_id")
        if event.type not in CHANGES or not isinstance(segment_id, str):
            continue
        key = (event.workspace_id, event.customer_key, segment_id)
        held = newest.get(key)
        if held is None or (event.occurred_at, event.id) > (held.occurred_at, held.id):
            newest[key] = event
    if not newest:
        return
    rows = list(newest.values())
    await conn.execute(
        sa.text(
            "INSERT INTO profile_segments AS s (workspace_id, customer_id, segment_id,"
            " segment_name, kind, member, changed_at, event_id, details)"
            " SELECT w, c, i, n, k, m, t, e, CAST(d AS jsonb) FROM unnest("
            " CAST(:ws AS text[]), CAST(:customers AS text[]), CAST(:ids AS text[]),"
            " CAST(:names AS text[]), CAST(:kinds AS text[]), CAST(:members AS boolean[]),"
            " CAST(:times AS timestamptz[]), CAST(:events AS text[]), CAST(:details AS text[]))"
            " x(w, c, i, n, k, m, t, e, d)"
            " ON CONFLICT (workspace_id, customer_id, segment_id) DO UPDATE SET"
            " segment_name = excluded.segment_name, kind = excluded.kind,"
            " member = excluded.member, changed_at = excluded.changed_at,"
            " event_id = excluded.event_id, details = excluded.details"
            " WHERE (excluded.changed_at, excluded.event_id) > (s.changed_at, s.event_id)"
        ),
        {
            "ws": [e.workspace_id for e in rows],
            "customers": [e.customer_key for e in rows],
            "ids": [e.payload["segment_id"] for e in rows],
            "names": [str(e.payload.get("segment_name") or e.payload["segment_id"]) for e in rows],
            "kinds": [str(e.payload.get("kind") or "rule") for e in rows],
            "members": [CHANGES[e.type] for e in rows],
            "times": [e.occurred_at for e in rows],
            "events": [e.id for e in rows],
            "details": [
                orjson.dumps(
                    {k: e.payload[k] for k in ("scores", "tier", "previous") if k in e.payload}
                ).decode()
                for e in rows
            ],
        },
    )
