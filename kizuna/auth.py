"""Workspaces and their keys. Write keys let clients post events; admin keys manage a workspace
through the management APIs (``Authorization: Bearer …``). Keys are stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

KeyKind = Literal["write", "admin"]

metadata = sa.MetaData()
workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("workspace_id", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("key_hash", sa.Text, nullable=False),
    sa.Column("hint", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)


@dataclass(frozen=True, slots=True)
class Principal:
    workspace_id: str
    key_id: str
    kind: KeyKind


@dataclass(frozen=True, slots=True)
class IssuedKey:
    id: str
    workspace_id: str
    kind: KeyKind
    name: str
    secret: str


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def generate_key(kind: KeyKind) -> str:
    return f"kz_{kind}_{secrets.token_urlsafe(24)}"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _hint(raw: str) -> str:
    return f"{raw[:8]}…{raw[-4:]}" if len(raw) > 16 else "…"


async def create_workspace(
    conn: AsyncConnection, name: str, workspace_id: str | None = None
) -> str:
    workspace_id = workspace_id or new_id("ws")
    await conn.execute(
        sa.insert(workspaces).values(id=workspace_id, name=name, created_at=datetime.now(UTC))
    )
    return workspace_id


async def issue_key(
    conn: AsyncConnection, workspace_id: str, kind: KeyKind, name: str, raw: str | None = None
) -> IssuedKey:
    raw = raw or generate_key(kind)
    key = IssuedKey(new_id("key"), workspace_id, kind, name, raw)
    await conn.execute(
        sa.insert(api_keys).values(
            id=key.id,
            workspace_id=workspace_id,
            kind=kind,
            name=name,
            key_hash=hash_key(raw),
            hint=_hint(raw),
            created_at=datetime.now(UTC),
        )
    )
    return key


async def authenticate(conn: AsyncConnection, raw: str, kind: KeyKind) -> Principal | None:
    row = (
        await conn.execute(
            sa.select(api_keys.c.id, api_keys.c.workspace_id).where(
                api_keys.c.key_hash == hash_key(raw),
                api_keys.c.kind == kind,
                api_keys.c.revoked_at.is_(None),
            )
        )
    ).first()
    return None if row is None else Principal(row.workspace_id, row.id, kind)


async def ensure_key(
    conn: AsyncConnection, workspace_id: str, kind: KeyKind, name: str, raw: str
) -> None:
    """Register ``raw`` for the workspace unless it already is (used for configured keys)."""
    exists = await conn.scalar(
        sa.select(api_keys.c.workspace_id).where(api_keys.c.key_hash == hash_key(raw))
    )
    if exists is None:
        await issue_key(conn, workspace_id, kind, name, raw)
    elif exists != workspace_id:
        raise ValueError(f"that {kind} key already belongs to another workspace")
