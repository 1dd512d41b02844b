"""The engine's pool on a real PostgreSQL whose server drops its connections: a connection that
was idle is pinged and replaced unseen; one in use a moment ago fails once with a disconnect
(an API answers 503), and the statement after it gets a fresh connection."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna import db
from kizuna.db import asyncpg_dsn, create_engine
from kizuna.http import install_error_handlers


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(sa.text("SELECT pg_backend_pid()")))


async def drop_connection(database_url: str, pid: int) -> None:
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
    finally:
        await admin.close()


async def test_an_idle_connection_the_server_dropped_is_replaced_unseen(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
    engine = create_engine(database_url, pool_size=1)
    try:
        first = await backend_pid(engine)
        await drop_connection(database_url, first)
        second = await backend_pid(engine)  # the ping failed; the pool connected again
        assert second != first
    finally:
        await engine.dispose()


async def test_a_busy_connection_the_server_dropped_fails_once_then_the_pool_recovers(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)
    engine = create_engine(database_url, pool_size=2)
    try:
        first = await backend_pid(engine)
        await drop_connection(database_url, first)
        with pytest.raises(DBAPIError) as failure:
            await backend_pid(engine)
        assert failure.value.connection_invalidated
        assert await backend_pid(engine) != first
    finally:
        await engine.dispose()


async def test_an_api_answers_503_with_retry_after_when_its_connection_was_dropped(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)
    engine = create_engine(database_url, pool_size=1)
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/pid")
    async def pid() -> dict[str, int]:
        return {"pid": await backend_pid(engine)}

    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://test",
        ) as client:
            first = (await client.get("/pid")).json()["pid"]
            await drop_connection(database_url, first)
            refused = await client.get("/pid")
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "5"
            assert "database" in refused.json()["error"]["message"]
            assert (await client.get("/pid")).json()["pid"] != first
    finally:
        await engine.dispose()
