"""``copy_rows`` and ``fetch_direct`` on a real PostgreSQL: they join the caller's transaction,
even as its first statement, and a duplicate key fails a copy."""

from __future__ import annotations

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna.db import copy_rows, create_engine, fetch_direct


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


async def test_statements_sent_direct_join_the_transaction_and_take_named_parameters(
    database_url: str,
) -> None:
    engine = create_engine(database_url, pool_size=1)
    insert = (
        "INSERT INTO direct (id, doc)"
        " SELECT i, CAST(:doc AS jsonb) FROM unnest(CAST(:ids AS text[])) i"
    )
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE direct (id text PRIMARY KEY, doc jsonb)"))
        async with engine.begin() as conn:  # the direct statement comes first
            await fetch_direct(conn, insert, {"ids": ["a", "b"], "doc": '{"n": 1}'})
        async with engine.connect() as conn:
            transaction = await conn.begin()
            await conn.execute(sa.text("SELECT 1"))
            await fetch_direct(conn, insert, {"ids": ["c"], "doc": "{}"})
            seen = await fetch_direct(conn, "SELECT count(*) AS n FROM direct", {})
            await transaction.rollback()
        assert seen[0]["n"] == 3
        async with engine.connect() as conn:
            rows = await fetch_direct(
                conn,
                "SELECT id, doc FROM direct WHERE id = ANY(CAST(:ids AS text[]))"
                " AND doc::text <> '' ORDER BY id",
                {"ids": ["a", "b", "c"]},
            )
        assert [(row["id"], row["doc"]) for row in rows] == [("a", {"n": 1}), ("b", {"n": 1})]
    finally:
        await engine.dispose()
