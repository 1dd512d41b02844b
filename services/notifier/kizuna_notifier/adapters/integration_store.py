"""SQL of integration webhooks: endpoints, messages, deliveries, attempts. Every function runs
in the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna_notifier.domain.integrations import Message

ENDPOINT_COLUMNS = (
    "id, workspace_id, url, description, event_types, enabled, disabled_reason, disabled_at,"
    " failing_since, last_success_at, created_at, updated_at"
)


async def endpoints_of(conn: AsyncConnection, workspace_ids: Iterable[str]) -> list[Any]:
    """Every endpoint of these workspaces: (id, workspace_id, event_types, enabled)."""
    rows = await conn.execute(
        sa.text(
            "SELECT id, workspace_id, event_types, enabled FROM nt_endpoints"
            " WHERE workspace_id = ANY(CAST(:ws AS text[]))"
        ),
        {"ws": sorted(set(workspace_ids))},
    )
    return list(rows.all())


async def record(
    conn: AsyncConnection,
    messages: Sequence[tuple[str, Message]],
    deliveries: Sequence[tuple[str, str, str]],
    due: datetime,
) -> None:
    """Keeps the messages (workspace, message) and makes their deliveries (workspace,
    endpoint, message); a message or delivery seen before is left as it is."""
    if messages:
        await conn.execute(
            sa.text(
                "INSERT INTO nt_webhook_messages (workspace_id, id, type, customer_id, body,"
                " occurred_at) SELECT * FROM unnest(CAST(:ws AS text[]), CAST(:id AS text[]),"
                " CAST(:type AS text[]), CAST(:c AS text[]), CAST(:body AS text[]),"
                " CAST(:at AS timestamptz[]))"
                " ON CONFLICT DO NOTHING"
            ),
            {
                "ws": [w for w, _ in messages],
                "id": [m.id for _, m in messages],
                "type": [m.type for _, m in messages],
                "c": [m.customer_id for _, m in messages],
                "body": [m.body for _, m in messages],
                "at": [m.occurred_at for _, m in messages],
            },
        )
    if deliveries:
        await conn.execute(
            sa.text(
                "INSERT INTO nt_webhook_deliveries (workspace_id, endpoint_id, message_id,"
                " status, next_attempt_at) SELECT w, e, m, 'pending', :due FROM"
                " unnest(CAST(:ws AS text[]), CAST(:ep AS text[]), CAST(:msg AS text[]))"
                " x(w, e, m) ON CONFLICT DO NOTHING"
            ),
            {
                "ws": [d[0] for d in deliveries],
                "ep": [d[1] for d in deliveries],
                "msg": [d[2] for d in deliveries],
                "due": due,
            },
        )


async def claim_due(
    conn: AsyncConnection, now: datetime, lease_until: datetime, limit: int
) -> list[Any]:
    """Takes due deliveries of enabled endpoints under a lease: a process that dies holding
    them leaves them due again when the lease ends."""
    rows = await conn.execute(
        sa.text(
            "WITH due AS (SELECT d.endpoint_id, d.message_id FROM nt_webhook_deliveries d"
            " JOIN nt_endpoints e ON e.id = d.endpoint_id WHERE d.status = 'pending'"
            " AND d.next_attempt_at <= :now AND e.enabled ORDER BY d.next_attempt_at"
            " LIMIT :n FOR UPDATE OF d SKIP LOCKED),"
            " taken AS (UPDATE nt_webhook_deliveries d SET next_attempt_at = :lease FROM due"
            " WHERE d.endpoint_id = due.endpoint_id AND d.message_id = due.message_id"
            " RETURNING d.endpoint_id, d.message_id, d.workspace_id, d.attempts)"
            " SELECT taken.*, m.body, e.url, e.secrets FROM taken"
            " JOIN nt_webhook_messages m ON m.workspace_id = taken.workspace_id"
            " AND m.id = taken.message_id JOIN nt_endpoints e ON e.id = taken.endpoint_id"
        ),
        {"now": now, "lease": lease_until, "n": limit},
    )
    return list(rows.all())


async def settle(
    conn: AsyncConnection,
    attempts: Sequence[dict[str, Any]],
    outcomes: Sequence[dict[str, Any]],
    lease: datetime,
) -> None:
    """``attempts``: rows of the attempt log. ``outcomes``: (endpoint_id, message_id, status,
    next_attempt_at, last_status, last_error) per delivery taken under ``lease``; each counts
    one attempt."""
    if attempts:
        await conn.execute(
            sa.text(
                "INSERT INTO nt_webhook_attempts (endpoint_id, message_id, attempted_at,"
                " status_code, latency_ms, response, error) SELECT * FROM"
                " unnest(CAST(:ep AS text[]), CAST(:msg AS text[]), CAST(:at AS timestamptz[]),"
                " CAST(:code AS int[]), CAST(:ms AS int[]), CAST(:resp AS text[]),"
                " CAST(:err AS text[]))"
            ),
            {
                "ep": [a["endpoint_id"] for a in attempts],
                "msg": [a["message_id"] for a in attempts],
                "at": [a["attempted_at"] for a in attempts],
                "code": [a["status_code"] for a in attempts],
                "ms": [a["latency_ms"] for a in attempts],
                "resp": [a["response"] for a in attempts],
                "err": [a["error"] for a in attempts],
            },
        )
    if outcomes:
        await conn.execute(
            sa.text(
                "UPDATE nt_webhook_deliveries d SET status = x.status, attempts = d.attempts + 1,"
                " next_attempt_at = x.next_at, last_status = x.code, last_error = x.err,"
                " updated_at = now() FROM unnest(CAST(:ep AS text[]), CAST(:msg AS text[]),"
                " CAST(:status AS text[]), CAST(:next_at AS timestamptz[]), CAST(:code AS int[]),"
                " CAST(:err AS text[])) x(ep, msg, status, next_at, code, err)"
                " WHERE d.endpoint_id = x.ep AND d.message_id = x.msg"
                " AND d.next_attempt_at = :lease"  # a replay meanwhile made it due again: it wins
            ),
            {
                "ep": [o["endpoint_id"] for o in outcomes],
                "msg": [o["message_id"] for o in outcomes],
                "status": [o["status"] for o in outcomes],
                "next_at": [o["next_attempt_at"] for o in outcomes],
                "code": [o["last_status"] for o in outcomes],
                "err": [o["last_error"] for o in outcomes],
                "lease": lease,
            },
        )


async def mark_health(
    conn: AsyncConnection, succeeded: Iterable[str], failed: Iterable[str], now: datetime
) -> None:
    """A success clears an endpoint's failing streak; a failure starts one if none is running."""
    ok = sorted(set(succeeded))
    failing = sorted(set(failed) - set(ok))
    if ok:
        await conn.execute(
            sa.text(
                "UPDATE nt_endpoints SET last_success_at = :now, failing_since = NULL"
                " WHERE id = ANY(CAST(:ids AS text[]))"
            ),
            {"now": now, "ids": ok},
        )
    if failing:
        await conn.execute(
            sa.text(
                "UPDATE nt_endpoints SET failing_since = :now WHERE id = ANY(CAST(:ids AS text[]))"
                " AND failing_since IS NULL"
            ),
            {"now": now, "ids": failing},
        )


async def failing_too_long(conn: AsyncConnection, ids: Iterable[str], since: datetime) -> list[Any]:
    ids = sorted(set(ids))
    if not ids:
        return []
    rows = await conn.execute(
        sa.text(
            "SELECT id, workspace_id, url FROM nt_endpoints WHERE id = ANY(CAST(:ids AS text[]))"
            " AND enabled AND failing_since <= :since"
        ),
        {"ids": ids, "since": since},
    )
    return list(rows.all())


async def disable(conn: AsyncConnection, endpoint_id: str, reason: str, now: datetime) -> bool:
    result = await conn.execute(
        sa.text(
            "UPDATE nt_endpoints SET enabled = false, disabled_reason = :reason,"
            " disabled_at = :now, updated_at = now() WHERE id = :id AND enabled"
        ),
        {"id": endpoint_id, "reason": reason, "now": now},
    )
    return bool(result.rowcount)


# --- the API's side -----------------------------------------------------------------------


async def create_endpoint(conn: AsyncConnection, row: dict[str, Any]) -> Any:
    result = await conn.execute(
        sa.text(
            "INSERT INTO nt_endpoints (id, workspace_id, url, description, event_types,"  # noqa: S608
            " enabled, secrets) VALUES (:id, :ws, :url, :description, :event_types, :enabled,"
            f" CAST(:secrets AS jsonb)) RETURNING {ENDPOINT_COLUMNS}"
        ),
        {**row, "secrets": orjson.dumps(row["secrets"]).decode()},
    )
    return result.one()


async def endpoint(conn: AsyncConnection, workspace_id: str, endpoint_id: str) -> Any | None:
    result = await conn.execute(
        sa.text(
            f"SELECT {ENDPOINT_COLUMNS}, secrets FROM nt_endpoints"  # noqa: S608
            " WHERE workspace_id = :ws AND id = :id"
        ),
        {"ws": workspace_id, "id": endpoint_id},
    )
    return result.one_or_none()


async def list_endpoints(conn: AsyncConnection, workspace_id: str) -> list[Any]:
    result = await conn.execute(
        sa.text(
            f"SELECT {ENDPOINT_COLUMNS} FROM nt_endpoints"  # noqa: S608
            " WHERE workspace_id = :ws ORDER BY created_at, id"
        ),
        {"ws": workspace_id},
    )
    return list(result.all())


async def update_endpoint(
    conn: AsyncConnection, workspace_id: str, endpoint_id: str, changes: dict[str, Any]
) -> None:
    assignments = [f"{name} = :{name}" for name in changes]
    if changes.get("enabled") is True:
        assignments += ["disabled_reason = NULL", "disabled_at = NULL", "failing_since = NULL"]
    await conn.execute(
        sa.text(
            f"UPDATE nt_endpoints SET {', '.join(assignments)}, updated_at = now()"  # noqa: S608
            " WHERE workspace_id = :ws AND id = :endpoint_id"
        ),
        {**changes, "ws": workspace_id, "endpoint_id": endpoint_id},
    )


async def save_secrets(
    conn: AsyncConnection, endpoint_id: str, secrets: list[dict[str, Any]]
) -> None:
    await conn.execute(
        sa.text(
            "UPDATE nt_endpoints SET secrets = CAST(:s AS jsonb), updated_at = now() WHERE id = :id"
        ),
        {"id": endpoint_id, "s": orjson.dumps(secrets).decode()},
    )


async def delete_endpoint(conn: AsyncConnection, workspace_id: str, endpoint_id: str) -> bool:
    await conn.execute(
        sa.text("DELETE FROM nt_webhook_deliveries WHERE endpoint_id = :id"), {"id": endpoint_id}
    )
    result = await conn.execute(
        sa.text("DELETE FROM nt_endpoints WHERE workspace_id = :ws AND id = :id"),
        {"ws": workspace_id, "id": endpoint_id},
    )
    return bool(result.rowcount)


async def replay(
    conn: AsyncConnection,
    workspace_id: str,
    endpoint_id: str,
    event_types: list[str],
    since: datetime,
    until: datetime,
    now: datetime,
    failed_only: bool,
) -> int:
    """Makes every kept message of the range that the endpoint subscribes to due again."""
    every = "*" in event_types
    result = await conn.execute(
        sa.text(
            "INSERT INTO nt_webhook_deliveries (workspace_id, endpoint_id, message_id, status,"
            " next_attempt_at) SELECT m.workspace_id, :ep, m.id, 'pending', :now"
            " FROM nt_webhook_messages m LEFT JOIN nt_webhook_deliveries d"
            " ON d.endpoint_id = :ep AND d.message_id = m.id"
            " WHERE m.workspace_id = :ws AND m.occurred_at >= :since AND m.occurred_at < :until"
            " AND (:every OR m.type = ANY(CAST(:types AS text[])))"
            " AND (NOT :failed_only OR d.status IS DISTINCT FROM 'succeeded')"
            " ON CONFLICT (endpoint_id, message_id) DO UPDATE SET status = 'pending',"
            " next_attempt_at = :now, attempts = 0, updated_at = now()"
        ),
        {
            "ws": workspace_id,
            "ep": endpoint_id,
            "since": since,
            "until": until,
            "now": now,
            "every": every,
            "types": event_types,
            "failed_only": failed_only,
        },
    )
    return int(result.rowcount)


async def dead_letters(conn: AsyncConnection, endpoint_id: str, limit: int) -> list[Any]:
    result = await conn.execute(
        sa.text(
            "SELECT d.message_id, m.type, d.attempts, d.last_status, d.last_error, d.updated_at"
            " FROM nt_webhook_deliveries d JOIN nt_webhook_messages m"
            " ON m.workspace_id = d.workspace_id AND m.id = d.message_id"
            " WHERE d.endpoint_id = :ep AND d.status = 'dead' ORDER BY d.updated_at LIMIT :n"
        ),
        {"ep": endpoint_id, "n": limit},
    )
    return list(result.all())


async def replay_dead(conn: AsyncConnection, endpoint_id: str, now: datetime) -> int:
    result = await conn.execute(
        sa.text(
            "UPDATE nt_webhook_deliveries SET status = 'pending', next_attempt_at = :now,"
            " attempts = 0, updated_at = now() WHERE endpoint_id = :ep AND status = 'dead'"
        ),
        {"ep": endpoint_id, "now": now},
    )
    return int(result.rowcount)


async def attempts_of(
    conn: AsyncConnection, endpoint_id: str, message_id: str | None, limit: int
) -> list[Any]:
    result = await conn.execute(
        sa.text(
            "SELECT id, message_id, attempted_at, status_code, latency_ms, response, error"
            " FROM nt_webhook_attempts WHERE endpoint_id = :ep"
            " AND (CAST(:msg AS text) IS NULL OR message_id = :msg) ORDER BY id DESC LIMIT :n"
        ),
        {"ep": endpoint_id, "msg": message_id, "n": limit},
    )
    return list(result.all())


async def forget_customers(conn: AsyncConnection, workspace_id: str, ids: list[str]) -> None:
    """Erasure: the person's messages go, undelivered ones included; ``customer.erased``
    itself (an id, no personal data) stays so integrations still hear of the erasure."""
    await conn.execute(
        sa.text(
            "WITH gone AS (DELETE FROM nt_webhook_messages WHERE workspace_id = :ws"
            " AND customer_id = ANY(CAST(:ids AS text[])) AND type <> 'customer.erased'"
            " RETURNING id) DELETE FROM nt_webhook_deliveries d USING gone"
            " WHERE d.workspace_id = :ws AND d.message_id = gone.id"
        ),
        {"ws": workspace_id, "ids": ids},
    )


async def prune_messages(conn: AsyncConnection, before: datetime) -> int:
    """Forgets messages older than ``before`` once nothing is pending for them."""
    result = await conn.execute(
        sa.text(
            "WITH old AS (DELETE FROM nt_webhook_messages m WHERE m.created_at < :before"
            " AND NOT EXISTS (SELECT 1 FROM nt_webhook_deliveries d WHERE d.workspace_id ="
            " m.workspace_id AND d.message_id = m.id AND d.status = 'pending')"
            " RETURNING m.workspace_id, m.id)"
            " DELETE FROM nt_webhook_deliveries d USING old WHERE d.workspace_id ="
            " old.workspace_id AND d.message_id = old.id"
        ),
        {"before": before},
    )
    await conn.execute(
        sa.text("DELETE FROM nt_webhook_attempts WHERE attempted_at < :before"),
        {"before": before},
    )
    return int(result.rowcount)
