"""Queries behind the customer API: find a customer, show it, search, list its timeline."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna_profile.domain import codec, view


async def find_customer(conn: AsyncConnection, workspace_id: str, reference: str) -> str | None:
    """A Kizuna id (current, or merged into another: its survivor), else a userId."""
    row = await conn.execute(
        sa.text(
            "SELECT coalesce("
            " (SELECT id FROM profile_customers WHERE workspace_id = :ws AND id = :ref),"
            " (SELECT survivor_id FROM profile_merges WHERE workspace_id = :ws"
            "  AND absorbed_id = :ref),"
            " (SELECT customer_id FROM profile_identifiers WHERE workspace_id = :ws"
            "  AND kind = 'user_id' AND value = :ref)) AS id"
        ),
        {"ws": workspace_id, "ref": reference},
    )
    found = row.scalar()
    return None if found is None else str(found)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def customer_view(
    conn: AsyncConnection, workspace_id: str, customer_id: str
) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                sa.text("SELECT * FROM profile_customers WHERE workspace_id = :ws AND id = :id"),
                {"ws": workspace_id, "id": customer_id},
            )
        )
        .mappings()
        .one_or_none()
    )
    if row is None:
        return None
    identifiers = await conn.execute(
        sa.text(
            "SELECT kind, value FROM profile_identifiers WHERE workspace_id = :ws"
            " AND customer_id = :id ORDER BY kind, value"
        ),
        {"ws": workspace_id, "id": customer_id},
    )
    by_kind: dict[str, list[str]] = {}
    for kind, value in identifiers:
        by_kind.setdefault(kind, []).append(value)
    segments = await conn.execute(
        sa.text(
            "SELECT segment_id, segment_name, kind, changed_at, details FROM profile_segments"
            " WHERE workspace_id = :ws AND customer_id = :id AND member ORDER BY segment_id"
        ),
        {"ws": workspace_id, "id": customer_id},
    )
    memberships = list(segments)
    rfm = next((s for s in memberships if s.kind == "rfm"), None)
    record = codec.from_json(
        row["record"],
        last_email_opened_at=row["last_email_opened_at"],
        last_email_clicked_at=row["last_email_clicked_at"],
    )
    orders = int(row["orders_count"])
    revenue = float(row["revenue_total"])
    return {
        "id": row["id"],
        "user_id": row["user_id"],
        "created_at": _time(row["created_at"]),
        "updated_at": _time(row["updated_at"]),
        "first_seen_at": _time(row["first_seen_at"]),
        "last_seen_at": _time(row["last_seen_at"]),
        "identifiers": by_kind,
        "profile": view.well_known(row["traits"]),
        "traits": row["traits"],
        "consent": view.consent(record),
        "suppression": view.suppression(record),
        "facts": {
            "events_count": int(row["events_count"]),
            "orders_count": orders,
            "revenue_total": revenue,
            "average_order_value": round(revenue / orders, 2) if orders else None,
            "first_order_at": _time(row["first_order_at"]),
            "last_order_at": _time(row["last_order_at"]),
            **view.behaviour(record),
        },
        "segments": [
            {
                "segment_id": s.segment_id,
                "name": s.segment_name,
                "kind": s.kind,
                "since": _time(s.changed_at),
            }
            for s in memberships
        ],
        "rfm": None
        if rfm is None
        else {"tier": rfm.segment_id, "name": rfm.segment_name, **rfm.details},
    }


def _trait_filter(name: str, raw: str) -> list[str]:
    """A query value may mean a number, a boolean or a string: match any of them."""
    candidates: list[Any] = [raw]
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, int | float | bool) and parsed not in candidates:
        candidates.append(parsed)
    return [orjson.dumps({name: value}).decode() for value in candidates]


async def search(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    identifiers: Sequence[tuple[str, str]],
    traits: Sequence[tuple[str, str]],
    segment: str | None,
    after: str | None,
    limit: int,
) -> list[str]:
    """Ids of the customers matching every filter, in id order, after the cursor."""
    where = ["c.workspace_id = :ws"]
    params: dict[str, Any] = {"ws": workspace_id, "limit": limit}
    for index, (kind, value) in enumerate(identifiers):
        where.append(
            "EXISTS (SELECT 1 FROM profile_identifiers i"  # noqa: S608
            " WHERE i.workspace_id = c.workspace_id AND i.customer_id = c.id"
            f" AND i.kind = :k{index} AND i.value = :v{index})"
        )
        params[f"k{index}"], params[f"v{index}"] = kind, value
    for index, (name, value) in enumerate(traits):
        options = _trait_filter(name, value)
        where.append(
            "("
            + " OR ".join(f"c.traits @> CAST(:t{index}_{n} AS jsonb)" for n in range(len(options)))
            + ")"
        )
        params.update({f"t{index}_{n}": option for n, option in enumerate(options)})
    if segment is not None:
        where.append(
            "EXISTS (SELECT 1 FROM profile_segments s WHERE s.workspace_id = c.workspace_id"
            " AND s.customer_id = c.id AND s.segment_id = :segment AND s.member)"
        )
        params["segment"] = segment
    if after is not None:
        where.append("c.id > :after")
        params["after"] = after
    rows = await conn.execute(
        sa.text(
            "SELECT c.id FROM profile_customers c WHERE "  # noqa: S608 - fixed fragments
            + " AND ".join(where)
            + " ORDER BY c.id LIMIT :limit"
        ),
        params,
    )
    return [row.id for row in rows]


async def timeline(
    conn: AsyncConnection,
    workspace_id: str,
    customer_id: str,
    *,
    types: Sequence[str],
    names: Sequence[str],
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    where = ["workspace_id = :ws", "customer_id = :id"]
    params: dict[str, Any] = {"ws": workspace_id, "id": customer_id, "limit": limit}
    if types:
        where.append("type = ANY(CAST(:types AS text[]))")
        params["types"] = list(types)
    if names:
        where.append("name = ANY(CAST(:names AS text[]))")
        params["names"] = list(names)
    if before is not None:
        where.append("(occurred_at, event_id) < (:before_at, :before_id)")
        params["before_at"], params["before_id"] = before
    rows = await conn.execute(
        sa.text(
            "SELECT event_id, type, name, occurred_at, received_at, payload"  # noqa: S608
            " FROM profile_events WHERE "
            + " AND ".join(where)
            + " ORDER BY occurred_at DESC, event_id DESC LIMIT :limit"
        ),
        params,
    )
    return [
        {
            "id": row.event_id,
            "type": row.type,
            "name": row.name,
            "occurred_at": row.occurred_at.isoformat(),
            "received_at": row.received_at.isoformat(),
            "payload": row.payload,
        }
        for row in rows
    ]
