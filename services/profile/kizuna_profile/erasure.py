"""Erasure (GDPR / APPI) and export of everything held about one person."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna.envelope import Envelope
from kizuna_profile.adapters import reads, store
from kizuna_profile.domain.identity import Identifier, lookup_keys

ERASED = "customer.erased"
ERASED_TABLES = ("profile_events", "profile_orders", "profile_identifiers", "profile_segments")


def erased_event(
    workspace_id: str, customer_id: str, absorbed: list[str], at: datetime
) -> Envelope:
    """Tells every service to delete what it holds about these ids. Carries no personal data."""
    return Envelope.new(
        ERASED,
        workspace_id,
        customer_id,
        {"customer_id": customer_id, "absorbed_ids": absorbed, "erased_at": at.isoformat()},
        occurred_at=at,
        event_id=f"erased:{customer_id}",
    )


async def _identifiers(
    conn: AsyncConnection, workspace_id: str, customer_id: str
) -> list[Identifier]:
    rows = await conn.execute(
        sa.text(
            "SELECT kind, value FROM profile_identifiers"
            " WHERE workspace_id = :ws AND customer_id = :id"
        ),
        {"ws": workspace_id, "id": customer_id},
    )
    return [Identifier(row.kind, row.value) for row in rows]


async def erase(
    conn: AsyncConnection, workspace_id: str, customer_id: str, now: datetime
) -> Envelope:
    """Deletes the customer and everything under it; leaves only hashed tombstones so that
    events which happened before the erasure and arrive late are dropped, not resurrected."""
    identifiers = await _identifiers(conn, workspace_id, customer_id)
    await store.lock(
        conn,
        [store.lock_key(workspace_id, k.kind, k.value) for i in identifiers for k in lookup_keys(i)]
        + [store.lock_key(workspace_id, "customer", customer_id)],
    )
    await store.lock_customers(conn, workspace_id, [customer_id])  # ConcurrentChange if merged
    identifiers = await _identifiers(conn, workspace_id, customer_id)
    absorbed = [
        row.absorbed_id
        for row in await conn.execute(
            sa.text(
                "SELECT absorbed_id FROM profile_merges WHERE workspace_id = :ws"
                " AND survivor_id = :id ORDER BY absorbed_id"
            ),
            {"ws": workspace_id, "id": customer_id},
        )
    ]
    keys = [store.erasure_key(workspace_id, i.kind, i.value) for i in identifiers]
    keys += [store.erasure_key(workspace_id, "customer", c) for c in (customer_id, *absorbed)]
    await conn.execute(
        sa.text(
            "INSERT INTO profile_erasures (workspace_id, key_hash, erased_at, customer_id)"
            " SELECT :ws, k, :at, :id FROM unnest(CAST(:keys AS text[])) k"
            " ON CONFLICT (workspace_id, key_hash) DO UPDATE SET erased_at = excluded.erased_at,"
            " customer_id = excluded.customer_id"
        ),
        {"ws": workspace_id, "keys": sorted(set(keys)), "at": now, "id": customer_id},
    )
    await conn.execute(
        sa.text(
            "INSERT INTO profile_erased_customers (workspace_id, customer_id, erased_at,"
            " absorbed_ids) VALUES (:ws, :id, :at, :absorbed) ON CONFLICT DO NOTHING"
        ),
        {"ws": workspace_id, "id": customer_id, "at": now, "absorbed": absorbed},
    )
    params = {"ws": workspace_id, "id": customer_id}
    for table in ERASED_TABLES:
        await conn.execute(
            sa.text(f"DELETE FROM {table} WHERE workspace_id = :ws AND customer_id = :id"),  # noqa: S608
            params,
        )
    await conn.execute(
        sa.text("DELETE FROM profile_merges WHERE workspace_id = :ws AND survivor_id = :id"),
        params,
    )
    await conn.execute(
        sa.text("DELETE FROM profile_customers WHERE workspace_id = :ws AND id = :id"), params
    )
    return erased_event(workspace_id, customer_id, absorbed, now)


async def erased_before(
    conn: AsyncConnection, workspace_id: str, reference: str
) -> Envelope | None:
    """The erasure of a customer erased earlier under this id or userId, to announce again."""
    row = (
        await conn.execute(
            sa.text(
                "SELECT e.customer_id, e.erased_at, e.absorbed_ids FROM profile_erasures t"
                " JOIN profile_erased_customers e ON e.workspace_id = t.workspace_id"
                " AND e.customer_id = t.customer_id WHERE t.workspace_id = :ws"
                " AND t.key_hash = ANY(CAST(:keys AS text[])) ORDER BY e.erased_at DESC LIMIT 1"
            ),
            {
                "ws": workspace_id,
                "keys": [
                    store.erasure_key(workspace_id, "customer", reference),
                    store.erasure_key(workspace_id, "user_id", reference),
                ],
            },
        )
    ).one_or_none()
    if row is None:
        return None
    return erased_event(workspace_id, row.customer_id, list(row.absorbed_ids), row.erased_at)


async def export(conn: AsyncConnection, workspace_id: str, customer_id: str) -> dict[str, Any]:
    customer = await reads.customer_view(conn, workspace_id, customer_id)
    params = {"ws": workspace_id, "id": customer_id}
    events = await conn.execute(
        sa.text(
            "SELECT event_id, type, name, occurred_at, received_at, payload FROM profile_events"
            " WHERE workspace_id = :ws AND customer_id = :id ORDER BY occurred_at, event_id"
        ),
        params,
    )
    orders = await conn.execute(
        sa.text(
            "SELECT order_id, ordered_at, amount, currency, refunded_amount, fully_refunded"
            " FROM profile_orders WHERE workspace_id = :ws AND customer_id = :id"
            " ORDER BY ordered_at NULLS LAST, order_id"
        ),
        params,
    )
    merged = await conn.execute(
        sa.text(
            "SELECT absorbed_id, merged_at FROM profile_merges"
            " WHERE workspace_id = :ws AND survivor_id = :id ORDER BY merged_at, absorbed_id"
        ),
        params,
    )
    return {
        "customer": customer,
        "merged_ids": [{"id": m.absorbed_id, "merged_at": m.merged_at.isoformat()} for m in merged],
        "orders": [
            {
                "order_id": o.order_id,
                "ordered_at": None if o.ordered_at is None else o.ordered_at.isoformat(),
                "amount": None if o.amount is None else float(o.amount),
                "currency": o.currency,
                "refunded_amount": float(o.refunded_amount),
                "fully_refunded": o.fully_refunded,
            }
            for o in orders
        ],
        "events": [
            {
                "id": e.event_id,
                "type": e.type,
                "name": e.name,
                "occurred_at": e.occurred_at.isoformat(),
                "received_at": e.received_at.isoformat(),
                "payload": e.payload,
            }
            for e in events
        ],
    }
