"""The profile tables, read and written with set-based statements (one per step, never one
round trip per event)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg
import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna.db import copy_rows, driver_connection
from kizuna.envelope import Envelope
from kizuna_profile.domain.identity import Identifier


class ConcurrentChange(Exception):
    """Another consumer changed what this batch read; the batch is retried from the start."""


def lock_key(workspace_id: str, *parts: str) -> str:
    """Names a lock; PostgreSQL hashes it to the 64-bit advisory lock key."""
    return "\x1f".join((workspace_id, *parts))


def erasure_key(workspace_id: str, kind: str, value: str) -> str:
    """What is kept of an erased identifier: a hash, so the tombstone holds no personal data."""
    return hashlib.sha256(f"{workspace_id}\0{kind}\0{value}".encode()).hexdigest()


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class CustomerRow(NamedTuple):
    """A locked customer's columns; the record's parts are read only when needed (``parts``)."""

    id: str
    user_id: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    events_count: int
    last_email_opened_at: datetime | None
    last_email_clicked_at: datetime | None


@dataclass(frozen=True)
class FirstLook:
    stored: dict[str, str]  # event id → its customer, for the events already stored
    any_erasures: bool  # most workspaces have none, so their tombstones need no look-up


async def first_look(
    conn: AsyncConnection, workspace_id: str, event_ids: Sequence[str]
) -> FirstLook:
    """A batch's first statement (through SQLAlchemy, which opens the transaction)."""
    rows = await conn.execute(
        sa.text(
            "SELECT event_id, customer_id FROM profile_events"
            " WHERE workspace_id = :ws AND event_id = ANY(CAST(:ids AS text[]))"
            " UNION ALL SELECT NULL, NULL WHERE EXISTS"
            " (SELECT 1 FROM profile_erasures WHERE workspace_id = :ws)"
        ),
        {"ws": workspace_id, "ids": list(event_ids)},
    )
    stored, any_erasures = {}, False
    for event_id, customer_id in rows:
        if event_id is None:
            any_erasures = True
        else:
            stored[event_id] = customer_id
    return FirstLook(stored, any_erasures)


async def merges_caused_by(
    conn: AsyncConnection, workspace_id: str, event_ids: Sequence[str]
) -> list[tuple[str, str, str]]:
    rows = await conn.execute(
        sa.text(
            "SELECT absorbed_id, survivor_id, cause_event_id FROM profile_merges"
            " WHERE workspace_id = :ws AND cause_event_id = ANY(CAST(:ids AS text[]))"
        ),
        {"ws": workspace_id, "ids": list(event_ids)},
    )
    return [(row.absorbed_id, row.survivor_id, row.cause_event_id) for row in rows]


async def erased_at(
    conn: AsyncConnection, workspace_id: str, keys: Iterable[str]
) -> dict[str, datetime]:
    rows = await (await driver_connection(conn)).fetch(
        "SELECT key_hash, erased_at FROM profile_erasures"
        " WHERE workspace_id = $1 AND key_hash = ANY($2::text[])",
        workspace_id,
        sorted(set(keys)),
    )
    return {row[0]: row[1] for row in rows}


async def lock(conn: AsyncConnection, keys: Iterable[str]) -> None:
    """Transaction-scoped advisory locks, always taken in sorted order so that two consumers
    never wait on each other in a cycle."""
    ordered = sorted(set(keys))
    if ordered:
        await (await driver_connection(conn)).execute(
            "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM unnest($1::text[]) k",
            ordered,
        )


@dataclass(frozen=True)
class Owners:
    of: dict[Identifier, str]
    any_aliases: bool  # without any, no identifier can be recorded under an alias twin


async def owners(
    conn: AsyncConnection, workspace_id: str, identifiers: Iterable[Identifier]
) -> Owners:
    """The customer each identifier belongs to, and whether the workspace has aliases. Run it
    after taking the identifiers' locks: an alias committed before then is seen."""
    wanted = list(set(identifiers))
    if not wanted:
        return Owners({}, any_aliases=False)  # nothing to look up under a twin either
    rows = await (await driver_connection(conn)).fetch(
        "SELECT i.kind, i.value, i.customer_id FROM profile_identifiers i"
        " JOIN unnest($2::text[], $3::text[]) w(kind, value)"
        " ON i.kind = w.kind AND i.value = w.value WHERE i.workspace_id = $1"
        " UNION ALL SELECT NULL, NULL, NULL WHERE EXISTS (SELECT 1 FROM profile_identifiers"
        " WHERE workspace_id = $1 AND kind = 'previous_id')",
        workspace_id,
        [i.kind for i in wanted],
        [i.value for i in wanted],
    )
    of, any_aliases = {}, False
    for kind, value, customer_id in rows:
        if kind is None:
            any_aliases = True
        else:
            of[Identifier(kind, value)] = customer_id
    return Owners(of, any_aliases)


async def current_ids(
    conn: AsyncConnection, workspace_id: str, customer_ids: Iterable[str]
) -> dict[str, str]:
    """Each id as it is now: itself if it exists, its survivor if merged; erased or unknown ids
    are left out."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    rows = await (await driver_connection(conn)).fetch(
        "SELECT w.id AS asked, coalesce(m.survivor_id, c.id) AS current"
        " FROM unnest($2::text[]) w(id)"
        " LEFT JOIN profile_merges m ON m.workspace_id = $1 AND m.absorbed_id = w.id"
        " LEFT JOIN profile_customers c ON c.workspace_id = $1 AND c.id = w.id"
        " WHERE m.survivor_id IS NOT NULL OR c.id IS NOT NULL",
        workspace_id,
        ids,
    )
    return {row[0]: row[1] for row in rows}


async def lock_customers(
    conn: AsyncConnection, workspace_id: str, customer_ids: Iterable[str]
) -> dict[str, CustomerRow]:
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    rows = await (await driver_connection(conn)).fetch(
        "SELECT id, user_id, first_seen_at, last_seen_at, events_count, last_email_opened_at,"
        " last_email_clicked_at FROM profile_customers"
        " WHERE workspace_id = $1 AND id = ANY($2::text[]) ORDER BY id FOR UPDATE",
        workspace_id,
        ids,
    )
    found = {row[0]: CustomerRow(*row) for row in rows}
    if len(found) != len(ids):
        raise ConcurrentChange("a customer was merged or erased while this batch was resolved")
    return found


async def parts(
    conn: AsyncConnection, workspace_id: str, customer_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The ``record`` JSON of customers this transaction has locked."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    rows = await (await driver_connection(conn)).fetch(
        "SELECT id, record FROM profile_customers WHERE workspace_id = $1 AND id = ANY($2::text[])",
        workspace_id,
        ids,
    )
    return {row[0]: row[1] for row in rows}


async def apply_merges(
    conn: AsyncConnection, workspace_id: str, merges: dict[str, tuple[str, str]]
) -> None:
    """Moves everything of each absorbed customer to its survivor, leaves a redirect."""
    if not merges:
        return
    absorbed = list(merges)
    params = {
        "ws": workspace_id,
        "absorbed": absorbed,
        "survivors": [merges[a][0] for a in absorbed],
        "causes": [merges[a][1] for a in absorbed],
    }
    moves = "unnest(CAST(:absorbed AS text[]), CAST(:survivors AS text[])) m(a, s)"
    for table in ("profile_identifiers", "profile_events", "profile_orders"):
        await conn.execute(
            sa.text(
                f"UPDATE {table} t SET customer_id = m.s FROM {moves}"  # noqa: S608
                " WHERE t.workspace_id = :ws AND t.customer_id = m.a"
            ),
            params,
        )
    await conn.execute(
        sa.text(
            f"UPDATE profile_merges t SET survivor_id = m.s FROM {moves}"  # noqa: S608
            " WHERE t.workspace_id = :ws AND t.survivor_id = m.a"
        ),
        params,
    )
    await conn.execute(
        sa.text(
            "INSERT INTO profile_merges (workspace_id, absorbed_id, survivor_id, cause_event_id)"
            " SELECT :ws, a, s, c FROM unnest(CAST(:absorbed AS text[]),"
            " CAST(:survivors AS text[]), CAST(:causes AS text[])) m(a, s, c)"
        ),
        params,
    )
    for table, column in (("profile_customers", "id"), ("profile_segments", "customer_id")):
        await conn.execute(
            sa.text(
                f"DELETE FROM {table} WHERE workspace_id = :ws"  # noqa: S608
                f" AND {column} = ANY(CAST(:absorbed AS text[]))"
            ),
            params,
        )


async def add_identifiers(
    conn: AsyncConnection, workspace_id: str, identifiers: dict[Identifier, str]
) -> None:
    """New identifiers only: one already claimed means another consumer got there first."""
    rows = [(workspace_id, i.kind, i.value, c) for i, c in identifiers.items()]
    await _copy_new(
        conn,
        "profile_identifiers",
        ("workspace_id", "kind", "value", "customer_id"),
        rows,
        "an identifier was claimed by another consumer",
    )


async def add_events(
    conn: AsyncConnection, workspace_id: str, events: Sequence[tuple[Envelope, str]]
) -> None:
    rows = [
        (
            workspace_id,
            e.id,
            customer,
            e.type,
            event_name(e),
            e.occurred_at,
            e.received_at,
            _json(e.payload),
        )
        for e, customer in events
    ]
    await _copy_new(
        conn,
        "profile_events",
        EVENT_COLUMNS,
        rows,
        "another consumer stored one of these events first",
    )


EVENT_COLUMNS = (
    "workspace_id",
    "event_id",
    "customer_id",
    "type",
    "name",
    "occurred_at",
    "received_at",
    "payload",
)


async def _copy_new(
    conn: AsyncConnection,
    table: str,
    columns: Sequence[str],
    rows: list[tuple[Any, ...]],
    conflict: str,
) -> None:
    if not rows:
        return
    try:
        await copy_rows(conn, table, columns, rows)
    except asyncpg.UniqueViolationError as error:
        raise ConcurrentChange(conflict) from error


def event_name(event: Envelope) -> str | None:
    name = event.payload.get("event") if event.type == "track" else event.payload.get("name")
    return name if isinstance(name, str) else None


@dataclass(frozen=True)
class CustomerWrite:
    """``traits`` and ``record`` are None when they stay as stored (never for a new customer)."""

    id: str
    is_new: bool
    user_id: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    events_count: int
    traits: dict[str, Any] | None
    record: dict[str, Any] | None
    last_email_opened_at: datetime | None
    last_email_clicked_at: datetime | None


CUSTOMER_COLUMNS = (
    "workspace_id",
    "id",
    "user_id",
    "first_seen_at",
    "last_seen_at",
    "events_count",
    "traits",
    "record",
    "last_email_opened_at",
    "last_email_clicked_at",
)


async def save_customers(
    conn: AsyncConnection, workspace_id: str, customers: Sequence[CustomerWrite]
) -> None:
    """New customers are copied in; the others, locked by this transaction, updated."""
    await _copy_new(
        conn,
        "profile_customers",
        CUSTOMER_COLUMNS,
        [
            (
                workspace_id,
                c.id,
                c.user_id,
                c.first_seen_at,
                c.last_seen_at,
                c.events_count,
                _json(c.traits),
                _json(c.record),
                c.last_email_opened_at,
                c.last_email_clicked_at,
            )
            for c in customers
            if c.is_new
        ],
        "another consumer created one of these customers first",
    )
    known = [c for c in customers if not c.is_new]
    if not known:
        return
    await (await driver_connection(conn)).execute(
        "UPDATE profile_customers c SET user_id = x.u, first_seen_at = x.f,"
        " last_seen_at = x.l, events_count = x.n, traits = coalesce(x.t::jsonb, c.traits),"
        " record = coalesce(x.r::jsonb, c.record), last_email_opened_at = x.o,"
        " last_email_clicked_at = x.c, updated_at = now()"
        " FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],"
        " $6::bigint[], $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[])"
        " x(i, u, f, l, n, t, r, o, c)"
        " WHERE c.workspace_id = $1 AND c.id = x.i",
        workspace_id,
        [c.id for c in known],
        [c.user_id for c in known],
        [c.first_seen_at for c in known],
        [c.last_seen_at for c in known],
        [c.events_count for c in known],
        [None if c.traits is None else _json(c.traits) for c in known],
        [None if c.record is None else _json(c.record) for c in known],
        [c.last_email_opened_at for c in known],
        [c.last_email_clicked_at for c in known],
    )


async def refresh_order_facts(
    conn: AsyncConnection, workspace_id: str, customer_ids: Iterable[str]
) -> None:
    """Orders count, net revenue and order times, recomputed from the orders themselves."""
    ids = sorted(set(customer_ids))
    if not ids:
        return
    await (await driver_connection(conn)).execute(
        "UPDATE profile_customers c SET orders_count = coalesce(a.n, 0),"
        " revenue_total = coalesce(a.revenue, 0), first_order_at = a.first_at,"
        " last_order_at = a.last_at"
        " FROM unnest($2::text[]) w(id) LEFT JOIN ("
        "  SELECT customer_id, count(*) AS n, min(ordered_at) AS first_at,"
        "  max(ordered_at) AS last_at, sum(CASE WHEN fully_refunded THEN 0"
        "  ELSE greatest(amount - refunded_amount, 0) END) AS revenue"
        "  FROM profile_orders WHERE workspace_id = $1"
        "  AND customer_id = ANY($2::text[]) AND ordered_at IS NOT NULL"
        "  GROUP BY customer_id) a ON a.customer_id = w.id"
        " WHERE c.workspace_id = $1 AND c.id = w.id",
        workspace_id,
        ids,
    )
