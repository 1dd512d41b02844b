"""Management API for the caller's own workspace and its keys (mounted by the ingest service)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from kizuna import auth
from kizuna.service import ServiceContext, get_context, require_admin

Admin = Annotated[auth.Principal, Depends(require_admin)]
Context = Annotated[ServiceContext, Depends(get_context)]


class WorkspaceRead(BaseModel):
    id: str
    name: str


class KeyCreate(BaseModel):
    kind: auth.KeyKind
    name: str = Field(min_length=1, max_length=200)


class KeyRead(BaseModel):
    id: str
    kind: str
    name: str
    hint: str
    created_at: datetime
    revoked_at: datetime | None


class KeyIssued(KeyRead):
    secret: str = Field(description="Shown once; Kizuna keeps only its hash.")


router = APIRouter(prefix="/v1", tags=["workspace"])


@router.get("/workspace")
async def read_workspace(principal: Admin, context: Context) -> WorkspaceRead:
    async with context.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(auth.workspaces).where(auth.workspaces.c.id == principal.workspace_id)
            )
        ).one()
    return WorkspaceRead(id=row.id, name=row.name)


@router.get("/keys")
async def list_keys(principal: Admin, context: Context) -> list[KeyRead]:
    async with context.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(auth.api_keys)
            .where(auth.api_keys.c.workspace_id == principal.workspace_id)
            .order_by(auth.api_keys.c.created_at, auth.api_keys.c.id)
        )
        return [KeyRead.model_validate(row, from_attributes=True) for row in rows]


@router.post("/keys", status_code=201)
async def create_key(body: KeyCreate, principal: Admin, context: Context) -> KeyIssued:
    async with context.engine.begin() as conn:
        issued = await auth.issue_key(conn, principal.workspace_id, body.kind, body.name)
        row = (
            await conn.execute(sa.select(auth.api_keys).where(auth.api_keys.c.id == issued.id))
        ).one()
    return KeyIssued.model_validate({**row._mapping, "secret": issued.secret})


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, principal: Admin, context: Context) -> None:
    async with context.engine.begin() as conn:
        result = await conn.execute(
            sa.update(auth.api_keys)
            .where(
                auth.api_keys.c.id == key_id,
                auth.api_keys.c.workspace_id == principal.workspace_id,
                auth.api_keys.c.revoked_at.is_(None),
            )
            .values(revoked_at=sa.func.now())
        )
    if result.rowcount == 0:
        raise HTTPException(404, f"no active key {key_id!r} in this workspace")
