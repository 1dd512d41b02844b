"""What the segmenter keeps of every customer for rule segments: traits (newest by event time),
consent (newest statement; an opt-out wins a tie, as in ADR 0005) and a log of what they did."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna.envelope import Envelope

LOGGED_TYPES = {"track": None, "page": "Page Viewed", "screen": "Screen Viewed"}
CHANNELS = frozenset({"email", "line", "sms", "webhook"})


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def event_name(event: Envelope) -> str | None:
    if event.type not in LOGGED_TYPES:
        return None
    if event.type == "track":
        name = event.payload.get("event")
        return name if isinstance(name, str) and name else None
    return LOGGED_TYPES[event.type]


async def ensure_customers(
    conn: AsyncConnection, workspace_id: str, customer_ids: Iterable[str]
) -> None:
    await conn.execute(
        sa.text(
            "INSERT INTO seg_customers (workspace_id, customer_id)"
            " SELECT :ws, unnest(CAST(:ids AS text[])) ON CONFLICT DO NOTHING"
        ),
        {"ws": workspace_id, "ids": sorted(set(customer_ids))},
    )


async def log_events(
    conn: AsyncConnection, workspace_id: str, events: Sequence[Envelope]
) -> set[str]:
    """Logs what the customers did; returns the ids of events not seen before."""
    rows = [(e, event_name(e)) for e in events]
    logged = [(e, name) for e, name in rows if name is not None]
    if not logged:
        return set()
    result = await conn.execute(
        sa.text(
            "INSERT INTO seg_events (workspace_id, event_id, customer_id, name, occurred_at,"
            " properties) SELECT :ws, i, c, n, t, CAST(p AS jsonb) FROM unnest("
            " CAST(:ids AS text[]), CAST(:customers AS text[]), CAST(:names AS text[]),"
            " CAST(:times AS timestamptz[]), CAST(:props AS text[])) x(i, c, n, t, p)"
            " ON CONFLICT DO NOTHING RETURNING event_id"
        ),
        {
            "ws": workspace_id,
            "ids": [e.id for e, _ in logged],
            "customers": [e.customer_key for e, _ in logged],
            "names": [name for _, name in logged],
            "times": [e.occurred_at for e, _ in logged],
            "props": [
                orjson.dumps(_object(e.payload.get("properties"))).decode() for e, _ in logged
            ],
        },
    )
    return {row.event_id for row in result}


def _newest(
    rows: Iterable[tuple[str, str, Any, datetime, str]],
) -> list[tuple[str, str, Any, datetime, str]]:
    newest: dict[tuple[str, str], tuple[str, str, Any, datetime, str]] = {}
    for row in rows:
        held = newest.get((row[0], row[1]))
        if held is None or (row[3], row[4]) > (held[3], held[4]):
            newest[row[0], row[1]] = row
    return list(newest.values())


async def record_traits(
    conn: AsyncConnection, workspace_id: str, events: Sequence[Envelope]
) -> None:
    rows = _newest(
        (e.customer_key, name, value, e.occurred_at, e.id)
        for e in events
        if e.type == "identify"
        for name, value in _object(e.payload.get("traits")).items()
    )
    if not rows:
        return
    await conn.execute(
        sa.text(
            "INSERT INTO seg_traits AS t (workspace_id, customer_id, name, value, at, event_id)"
            " SELECT :ws, c, n, CAST(v AS jsonb), a, e FROM unnest(CAST(:customers AS text[]),"
            " CAST(:names AS text[]), CAST(:values AS text[]), CAST(:ats AS timestamptz[]),"
            " CAST(:events AS text[])) x(c, n, v, a, e)"
            " ON CONFLICT (workspace_id, customer_id, name) DO UPDATE SET value = excluded.value,"
            " at = excluded.at, event_id = excluded.event_id"
            " WHERE (excluded.at, excluded.event_id) > (t.at, t.event_id)"
        ),
        {
            "ws": workspace_id,
            "customers": [r[0] for r in rows],
            "names": [r[1] for r in rows],
            "values": [orjson.dumps(r[2]).decode() for r in rows],
            "ats": [r[3] for r in rows],
            "events": [r[4] for r in rows],
        },
    )


def _consent_statement(event: Envelope) -> tuple[str, str] | None:
    if event.type != "track":
        return None
    name = event.payload.get("event")
    properties = _object(event.payload.get("properties"))
    channel = properties.get("channel")
    if name == "Unsubscribed":
        channel = channel or "email"
        status: Any = "revoked"
    elif name == "Consent Updated":
        status = properties.get("status")
        if isinstance(properties.get("granted"), bool):
            status = "granted" if properties["granted"] else "revoked"
    else:
        return None
    channel = channel.lower() if isinstance(channel, str) else None
    if channel not in CHANNELS or status not in ("granted", "revoked"):
        return None
    return channel, status


async def record_consent(
    conn: AsyncConnection, workspace_id: str, events: Sequence[Envelope]
) -> None:
    statements: dict[tuple[str, str], tuple[str, datetime, bool, str]] = {}
    for event in events:
        found = _consent_statement(event)
        if found is None:
            continue
        channel, status = found
        key = (event.customer_key, channel)
        candidate = (status, event.occurred_at, status == "revoked", event.id)
        held = statements.get(key)
        if held is None or candidate[1:] > held[1:]:
            statements[key] = candidate
    if not statements:
        return
    keys = list(statements)
    await conn.execute(
        sa.text(
            "INSERT INTO seg_consent AS k (workspace_id, customer_id, channel, status, at,"
            " event_id) SELECT :ws, c, ch, s, a, e FROM unnest(CAST(:customers AS text[]),"
            " CAST(:channels AS text[]), CAST(:statuses AS text[]),"
            " CAST(:ats AS timestamptz[]), CAST(:events AS text[])) x(c, ch, s, a, e)"
            " ON CONFLICT (workspace_id, customer_id, channel) DO UPDATE SET"
            " status = excluded.status, at = excluded.at, event_id = excluded.event_id"
            " WHERE (excluded.at, excluded.status = 'revoked', excluded.event_id)"
            " > (k.at, k.status = 'revoked', k.event_id)"
        ),
        {
            "ws": workspace_id,
            "customers": [k[0] for k in keys],
            "channels": [k[1] for k in keys],
            "statuses": [statements[k][0] for k in keys],
            "ats": [statements[k][1] for k in keys],
            "events": [statements[k][3] for k in keys],
        },
    )


async def move(conn: AsyncConnection, workspace_id: str, absorbed: str, survivor: str) -> None:
    """A merge: the survivor takes the absorbed customer's traits, consent and history."""
    params = {"ws": workspace_id, "a": absorbed, "s": survivor}
    for table, key, newer in (
        ("seg_traits", "name", "(excluded.at, excluded.event_id) > (t.at, t.event_id)"),
        (
            "seg_consent",
            "channel",
            "(excluded.at, excluded.status = 'revoked', excluded.event_id)"
            " > (t.at, t.status = 'revoked', t.event_id)",
        ),
    ):
        value = "value" if table == "seg_traits" else "status"
        await conn.execute(
            sa.text(
                f"INSERT INTO {table} AS t (workspace_id, customer_id, {key}, {value}, at,"  # noqa: S608
                f" event_id) SELECT workspace_id, :s, {key}, {value}, at, event_id FROM {table}"
                " WHERE workspace_id = :ws AND customer_id = :a"
                f" ON CONFLICT (workspace_id, customer_id, {key}) DO UPDATE SET"
                f" {value} = excluded.{value}, at = excluded.at, event_id = excluded.event_id"
                f" WHERE {newer}"
            ),
            params,
        )
        await conn.execute(
            sa.text(f"DELETE FROM {table} WHERE workspace_id = :ws AND customer_id = :a"),  # noqa: S608
            params,
        )
    await conn.execute(
        sa.text(
            "UPDATE seg_events SET customer_id = :s WHERE workspace_id = :ws AND customer_id = :a"
        ),
        params,
    )


async def forget(conn: AsyncConnection, workspace_id: str, customer_ids: Sequence[str]) -> None:
    """An erasure: nothing of these customers stays."""
    for table in ("seg_traits", "seg_consent", "seg_events", "seg_memberships"):
        await conn.execute(
            sa.text(
                f"DELETE FROM {table} WHERE workspace_id = :ws"  # noqa: S608
                " AND customer_id = ANY(CAST(:ids AS text[]))"
            ),
            {"ws": workspace_id, "ids": list(customer_ids)},
        )
