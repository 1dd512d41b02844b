"""Management of sources: per write key, whether it is enabled, its browser origins, its rate."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field, field_validator
from sqlalchemy.dialects.postgresql import insert

from kizuna import auth
from kizuna.service import ServiceContext, get_context, require_admin
from kizuna_ingest.adapters.sources import SourceRow, source_query, sources, to_source

router = APIRouter(prefix="/v1/sources", tags=["sources"])
Admin = Annotated[auth.Principal, Depends(require_admin)]
Context = Annotated[ServiceContext, Depends(get_context)]


class SourceRead(BaseModel):
    key_id: str
    enabled: bool
    allowed_origins: list[str] = Field(description="Empty: any origin may post.")
    rate_limit_per_second: float | None


class SourceUpdate(BaseModel):
    enabled: bool | None = None
    allowed_origins: list[Annotated[str, Field(pattern=r"^https?://[^/\s]+$")]] | None = None
    rate_limit_per_second: float | None = Field(
        default=None,
        ge=0.01,
        le=1_000_000,
        allow_inf_nan=False,
        description="null: the installation's default (KIZUNA_INGEST_RATE_LIMIT).",
    )

    @field_validator("enabled", "allowed_origins")
    @classmethod
    def not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must not be null")
        return value


def _where_own(principal: auth.Principal) -> sa.ColumnElement[bool]:
    return sa.and_(
        auth.api_keys.c.workspace_id == principal.workspace_id,
        auth.api_keys.c.kind == "write",
        auth.api_keys.c.revoked_at.is_(None),
    )


def _read(row: SourceRow) -> SourceRead:
    source = to_source(row)
    return SourceRead(
        key_id=source.key_id,
        enabled=source.enabled,
        allowed_origins=list(source.allowed_origins),
        rate_limit_per_second=source.rate_limit_per_second,
    )


@router.get("")
async def list_sources(principal: Admin, context: Context) -> list[SourceRead]:
    async with context.engine.connect() as conn:
        rows = await conn.execute(source_query().where(_where_own(principal)))
        return [_read(row) for row in rows]


@router.patch("/{key_id}")
async def update_source(
    key_id: str, body: SourceUpdate, principal: Admin, context: Context
) -> SourceRead:
    changes = body.model_dump(exclude_unset=True)
    async with context.engine.begin() as conn:
        own = await conn.scalar(
            sa.select(auth.api_keys.c.id).where(_where_own(principal), auth.api_keys.c.id == key_id)
        )
        if own is None:
            raise HTTPException(404, f"no active write key {key_id!r} in this workspace")
        await conn.execute(
            insert(sources)
            .values(
                {
                    "key_id": key_id,
                    "workspace_id": principal.workspace_id,
                    "enabled": True,
                    "allowed_origins": [],
                    "updated_at": sa.func.now(),
                    **changes,
                }
            )
            .on_conflict_do_update(
                index_elements=[sources.c.key_id], set_={**changes, "updated_at": sa.func.now()}
            )
        )
        row = (await conn.execute(source_query().where(auth.api_keys.c.id == key_id))).one()
    return _read(row)
