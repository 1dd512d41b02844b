"""The embedded PostgreSQL runs with the settings the services rely on (kizuna.embedded_pg)."""

from __future__ import annotations

import os

import asyncpg
import pytest

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("KIZUNA_TEST_DATABASE_URL")),
    reason="the tests run on a server of their own, not the embedded one",
)


async def test_autovacuum_visits_each_database_every_ten_seconds(pg_server_url: str) -> None:
    conn = await asyncpg.connect(pg_server_url)
    try:
        assert await conn.fetchval("SHOW autovacuum_naptime") == "10s"
        assert await conn.fetchval("SHOW max_connections") == "400"  # the caller's settings too
        assert await conn.fetchval("SHOW shared_buffers") == "512MB"
        assert await conn.fetchval("SHOW max_wal_size") == "4GB"
    finally:
        await conn.close()
