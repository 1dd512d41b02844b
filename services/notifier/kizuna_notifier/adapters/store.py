"""SQL of the notifier: the sends ledger, the consent mirror, templates. Every function runs
in the caller's transaction."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna.consent import Statement
from kizuna_notifier.domain.rate import Admission
from kizuna_notifier.domain.templates import TemplateBody

RETRY_LEASE_SECONDS = 600  # a retry taken by a process that then dies is due again after this


@dataclass(frozen=True)
class Claimed:
    send_id: str
    attempts: int
    resumed: bool  # it was being sent when a process stopped: send again, same Message-ID


async def claim(
    conn: AsyncConnection, workspace_id: str, requests: Sequence[dict[str, Any]]
) -> list[Claimed]:
    """Records each request before anything is sent. Returns the ones to work on: new ones,
    and ones a stopped process left half-done; a send already finished is never claimed."""
    rows = await conn.execute(
        sa.text(
            "INSERT INTO nt_sends (workspace_id, send_id, customer_id, channel, category,"
            " template, status, request) SELECT :ws, s, c, ch, cat, t, 'sending', r"
            " FROM unnest(CAST(:s AS text[]), CAST(:c AS text[]), CAST(:ch AS text[]),"
            " CAST(:cat AS text[]), CAST(:t AS text[]), CAST(:r AS jsonb[])) x(s, c, ch, cat, t, r)"
            " ON CONFLICT (workspace_id, send_id) DO UPDATE SET updated_at = now()"
            " WHERE nt_sends.status = 'sending'"
            " RETURNING send_id, attempts, (xmax <> 0) AS resumed"
        ),
        {
            "ws": workspace_id,
            "s": [r["send_id"] for r in requests],
            "c": [r["customer_id"] for r in requests],
            "ch": [r["channel"] for r in requests],
            "cat": [r["category"] for r in requests],
            "t": [r.get("template") for r in requests],
            "r": [orjson.dumps(r).decode() for r in requests],
        },
    )
    return [Claimed(row.send_id, row.attempts, row.resumed) for row in rows.all()]


async def finish(conn: AsyncConnection, workspace_id: str, rows: Sequence[dict[str, Any]]) -> None:
    """(send_id, status, reason, message_id, recipient, next_attempt_at) per send."""
    if not rows:
        return
    await conn.execute(
        sa.text(
            "UPDATE nt_sends SET status = :status, reason = :reason, message_id = :message_id,"
            " recipient = :recipient, next_attempt_at = :next_attempt_at,"
            " attempts = attempts + :tried, updated_at = now()"
            " WHERE workspace_id = :ws AND send_id = :send_id"
        ),
        [{"ws": workspace_id, "tried": 0, "next_attempt_at": None, **row} for row in rows],
    )


async def consent_of(
    conn: AsyncConnection, workspace_id: str, customers: Iterable[str]
) -> dict[tuple[str, str], str]:
    """(customer, channel) → granted, revoked or suppressed."""
    rows = await conn.execute(
        sa.text(
            "SELECT customer_id, channel, status FROM nt_consent WHERE workspace_id = :ws"
            " AND customer_id = ANY(CAST(:c AS text[]))"
        ),
        {"ws": workspace_id, "c": sorted(set(customers))},
    )
    return {(r.customer_id, r.channel): r.status for r in rows.all()}


async def record_consent(
    conn: AsyncConnection, workspace_id: str, customer_id: str, statement: Statement
) -> None:
    """Newest statement wins, an opt-out wins a tie; a suppression is never lifted."""
    at, _, event_id = statement.stamp.partition("|")
    await conn.execute(
        sa.text(
            "INSERT INTO nt_consent (workspace_id, customer_id, channel, status, at, strict,"
            " event_id, source) VALUES (:ws, :c, :ch, :st, :at, :strict, :id, :src)"
            " ON CONFLICT (workspace_id, customer_id, channel) DO UPDATE SET"
            " status = excluded.status, at = excluded.at, strict = excluded.strict,"
            " event_id = excluded.event_id, source = excluded.source"
            " WHERE nt_consent.status <> 'suppressed' AND (excluded.status = 'suppressed'"
            " OR (nt_consent.at, nt_consent.strict, nt_consent.event_id)"
            " < (excluded.at, excluded.strict, excluded.event_id))"
        ),
        {
            "ws": workspace_id,
            "c": customer_id,
            "ch": statement.channel,
            "st": statement.status,
            "at": at,
            "strict": statement.status != "granted",
            "id": event_id,
            "src": statement.source,
        },
    )


async def templates_of(
    conn: AsyncConnection, workspace_id: str, ids: Iterable[str]
) -> dict[str, TemplateBody]:
    rows = await conn.execute(
        sa.text(
            "SELECT id, body FROM nt_templates WHERE workspace_id = :ws"
            " AND id = ANY(CAST(:ids AS text[]))"
        ),
        {"ws": workspace_id, "ids": sorted(set(ids))},
    )
    return {row.id: TemplateBody.model_validate(row.body) for row in rows.all()}


async def due_retries(conn: AsyncConnection, now: datetime, limit: int) -> list[Any]:
    rows = await conn.execute(
        sa.text(
            "UPDATE nt_sends SET next_attempt_at = :lease, updated_at = now() WHERE (workspace_id,"
            " send_id) IN (SELECT workspace_id, send_id FROM nt_sends WHERE status = 'retrying'"
            " AND next_attempt_at <= :now ORDER BY next_attempt_at LIMIT :n"
            " FOR UPDATE SKIP LOCKED) RETURNING workspace_id, send_id, attempts, request"
        ),
        {"now": now, "n": limit, "lease": now + timedelta(seconds=RETRY_LEASE_SECONDS)},
    )
    return list(rows.all())


async def signing_secret(conn: AsyncConnection, workspace_id: str) -> str:
    """The workspace's webhook signing secret (``whsec_…``), made on first use."""
    fresh = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    await conn.execute(
        sa.text(
            "INSERT INTO nt_signing_secrets (workspace_id, secret) VALUES (:ws, :s)"
            " ON CONFLICT DO NOTHING"
        ),
        {"ws": workspace_id, "s": fresh},
    )
    secret: str = await conn.scalar(
        sa.text("SELECT secret FROM nt_signing_secrets WHERE workspace_id = :ws"),
        {"ws": workspace_id},
    )
    return secret


async def channel_configs(conn: AsyncConnection, workspace_id: str) -> dict[str, dict[str, Any]]:
    rows = await conn.execute(
        sa.text("SELECT channel, config FROM nt_channels WHERE workspace_id = :ws"),
        {"ws": workspace_id},
    )
    return {row.channel: dict(row.config) for row in rows.all()}


async def save_channel(
    conn: AsyncConnection, workspace_id: str, channel: str, config: dict[str, Any]
) -> None:
    await conn.execute(
        sa.text(
            "INSERT INTO nt_channels (workspace_id, channel, config)"
            " VALUES (:ws, :ch, CAST(:config AS jsonb)) ON CONFLICT (workspace_id, channel)"
            " DO UPDATE SET config = excluded.config, updated_at = now()"
        ),
        {"ws": workspace_id, "ch": channel, "config": orjson.dumps(config).decode()},
    )


async def forget_channel(conn: AsyncConnection, workspace_id: str, channel: str) -> bool:
    result = await conn.execute(
        sa.text("DELETE FROM nt_channels WHERE workspace_id = :ws AND channel = :ch"),
        {"ws": workspace_id, "ch": channel},
    )
    return bool(result.rowcount)


async def reserve(
    conn: AsyncConnection,
    workspace_id: str,
    channel: str,
    plan: Callable[[float], Admission],
) -> Admission:
    """Runs ``plan`` on the bucket's stored time under a row lock, so replicas share one limit."""
    await conn.execute(
        sa.text(
            "INSERT INTO nt_rate_buckets (workspace_id, channel, tat) VALUES (:ws, :ch, 0)"
            " ON CONFLICT DO NOTHING"
        ),
        {"ws": workspace_id, "ch": channel},
    )
    tat = await conn.scalar(
        sa.text(
            "SELECT tat FROM nt_rate_buckets WHERE workspace_id = :ws AND channel = :ch FOR UPDATE"
        ),
        {"ws": workspace_id, "ch": channel},
    )
    admission = plan(float(tat or 0))
    await conn.execute(
        sa.text("UPDATE nt_rate_buckets SET tat = :tat WHERE workspace_id = :ws AND channel = :ch"),
        {"ws": workspace_id, "ch": channel, "tat": admission.tat},
    )
    return admission
