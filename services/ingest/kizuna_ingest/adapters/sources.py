"""Write keys and their source settings, cached briefly so the hot path rarely hits the
database. A revoked key or a changed setting takes effect within the cache TTL."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna import auth

sources = sa.Table(
    "ingest_sources",
    sa.MetaData(),
    sa.Column("key_id", sa.Text, primary_key=True),
    sa.Column("workspace_id", sa.Text, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("allowed_origins", postgresql.ARRAY(sa.Text), nullable=False),
    sa.Column("rate_limit_per_second", sa.Float),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Source:
    key_id: str
    workspace_id: str
    enabled: bool
    allowed_origins: tuple[str, ...]
    rate_limit_per_second: float | None

    def allows_origin(self, origin: str | None) -> bool:
        return not self.allowed_origins or origin is None or origin in self.allowed_origins


SourceRow = sa.Row[str, str, bool | None, list[str] | None, float | None]


def source_query() -> sa.Select[str, str, bool | None, list[str] | None, float | None]:
    k, s = auth.api_keys, sources
    return sa.select(
        k.c.id, k.c.workspace_id, s.c.enabled, s.c.allowed_origins, s.c.rate_limit_per_second
    ).select_from(k.outerjoin(s, s.c.key_id == k.c.id))


def to_source(row: SourceRow) -> Source:
    return Source(
        key_id=row[0],
        workspace_id=row[1],
        enabled=True if row[2] is None else row[2],
        allowed_origins=tuple(row[3] or ()),
        rate_limit_per_second=row[4],
    )


class SourceDirectory:
    def __init__(self, engine: AsyncEngine, ttl: float, negative_ttl: float = 5.0) -> None:
        self.engine = engine
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self._cache: dict[str, tuple[float, Source | None]] = {}

    async def lookup(self, write_key: str) -> Source | None:
        digest = auth.hash_key(write_key)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    source_query().where(
                        auth.api_keys.c.key_hash == digest,
                        auth.api_keys.c.kind == "write",
                        auth.api_keys.c.revoked_at.is_(None),
                    )
                )
            ).first()
        source = None if row is None else to_source(row)
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[digest] = (now + (self.ttl if source else self.negative_ttl), source)
        return source
