"""``copy_rows`` on a real PostgreSQL: it joins the caller's transaction, even as its first
statement, and a duplicate key fails it."""

from __future__ import annotations

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna.db import copy_rows, create_engine


async def copy_in_one_transaction(engine: AsyncEngine, rows: list[tuple[str, str]]) -> None:
    async with engine.begin() as conn:
        await copy_rows(conn, "copied", ("id", "doc"), rows)


async def test_copied_rows_commit_and_roll_back_with_the_transaction(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE copied (id text PRIMARY KEY, doc jsonb)"))
        await copy_in_one_transaction(engine, [("a", '{"n": 1}'), ("b", "{}")])
        async with engine.connect() as conn:
            transaction = await conn.begin()
            await copy_rows(conn, "copied", ("id", "doc"), [("c", '{"n": 3}')])
            await transaction.rollback()
        with pytest.raises(asyncpg.UniqueViolationError):
            await copy_in_one_transaction(engine, [("d", "{}"), ("a", "{}")])
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT id, doc FROM copied ORDER BY id"))).all()
        assert [(row.id, row.doc) for row in rows] == [("a", {"n": 1}), ("b", {})]
    finally:
        await engine.dispose()
