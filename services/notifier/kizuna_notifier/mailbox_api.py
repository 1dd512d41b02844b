"""The local mailbox (port 8005, admin key): what `make dev` would have sent, as JSON or .eml;
and the webhook signing secret."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response

from kizuna import auth
from kizuna.service import ServiceContext, get_context, require_admin
from kizuna_notifier.adapters import store

router = APIRouter(prefix="/v1/mailbox", tags=["mailbox"])
Admin = Annotated[auth.Principal, Depends(require_admin)]
Context = Annotated[ServiceContext, Depends(get_context)]


@router.get("")
async def list_mail(
    admin: Admin,
    context: Context,
    limit: int = Query(default=50, ge=1, le=500),
    before: int | None = Query(default=None, ge=1),
) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT id, send_id, message_id, recipient, subject, created_at FROM nt_mailbox"
                " WHERE workspace_id = :ws AND (CAST(:before AS bigint) IS NULL OR id < :before)"
                " ORDER BY id DESC LIMIT :n"
            ),
            {"ws": admin.workspace_id, "before": before, "n": limit},
        )
        mail = [
            {
                **dict(r._mapping),
                "created_at": r.created_at.isoformat(),
                "eml": f"/v1/mailbox/{r.id}.eml",
            }
            for r in rows.all()
        ]
    return {"mail": mail, "next_before": mail[-1]["id"] if len(mail) == limit else None}


@router.get("/{mail_id}.eml")
async def get_mail(mail_id: int, admin: Admin, context: Context) -> Response:
    async with context.engine.connect() as conn:
        raw = await conn.scalar(
            sa.text("SELECT raw FROM nt_mailbox WHERE workspace_id = :ws AND id = :id"),
            {"ws": admin.workspace_id, "id": mail_id},
        )
    if raw is None:
        raise HTTPException(404, f"no mail {mail_id}")
    return Response(
        bytes(raw),
        media_type="message/rfc822",
        headers={"Content-Disposition": f'attachment; filename="{mail_id}.eml"'},
    )


secrets = APIRouter(prefix="/v1/signing-secret", tags=["webhooks"])


@secrets.get("")
async def signing_secret(admin: Admin, context: Context) -> dict[str, str]:
    """The secret that signs this workspace's webhook-step deliveries (Standard Webhooks):
    verify ``webhook-signature`` with it."""
    async with context.engine.begin() as conn:
        return {"secret": await store.signing_secret(conn, admin.workspace_id)}
