"""One async SQLAlchemy engine per process, over asyncpg."""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = structlog.get_logger(__name__)


def sqlalchemy_url(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def asyncpg_dsn(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def _json_dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    engine = create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )
    _ping_connections_back_from_idle(engine)
    return engine


PING_AFTER_IDLE_SECONDS = 2.0


def _ping_connections_back_from_idle(engine: AsyncEngine) -> None:
    """``pool_pre_ping`` costs three round trips (BEGIN, ping, ROLLBACK) on every checkout, a
    busy consumer's largest overhead per batch. A connection that was in use a moment ago is
    almost surely alive, and if the server went away since, the statement fails with a
    disconnect, the pool drops every older connection and the caller's retry gets fresh ones.
    So only connections idle for a while are pinged; a failed ping makes the pool connect
    again."""
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    @sa.event.listens_for(pool, "checkin")
    def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @sa.event.listens_for(pool, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise sa.exc.DisconnectionError(f"idle connection is gone: {error}") from error


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


DATABASE_AWAY = (DBAPIError, PoolTimeout, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def retry_while_database_away(
    work: Callable[[], Awaitable[None]], *, seconds: float, event: str, **context: Any
) -> None:
    """Runs ``work``, again with backoff while the database cannot be reached or fails it, for
    up to ``seconds``; then the error is raised. For recording what has already been done
    outside (mails sent, webhooks posted), which a failure would otherwise make happen again."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + seconds
    backoff = 0.2
    while True:
        try:
            await work()
            return
        except DATABASE_AWAY:
            if loop.time() + backoff > give_up:
                raise
            log.warning(event, exc_info=True, **context)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


async def copy_rows(
    conn: AsyncConnection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Binary ``COPY`` of new rows into ``table``, inside ``conn``'s transaction: a third faster
    than ``INSERT … SELECT unnest(…)`` for thousands of rows. There is no ``ON CONFLICT``: a
    duplicate key raises ``asyncpg.UniqueViolationError`` and the transaction is lost."""
    driver = await driver_connection(conn)
    await driver.copy_records_to_table(table, records=rows, columns=list(columns))


_NAMED_PARAMETER = re.compile(r"(?<![:\w\x5c]):(\w+)(?!:)")  # as sqlalchemy.text() finds them


@functools.lru_cache(maxsize=512)
def _numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """``:name`` parameters as asyncpg's ``$n``, and the names in their order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    return _NAMED_PARAMETER.sub(number, sql), tuple(names)


async def fetch_direct(
    conn: AsyncConnection, sql: str, params: Mapping[str, Any]
) -> list[asyncpg.Record]:
    """``conn.execute(sa.text(sql), params)`` sent straight to asyncpg (see
    ``driver_connection``); rows are ``asyncpg.Record``s, read by index or column name."""
    query, names = _numbered(sql)
    driver = await driver_connection(conn)
    return await driver.fetch(query, *(params[name] for name in names))


async def driver_connection(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under ``conn``, inside ``conn``'s transaction. A statement sent
    straight to it costs half the client time of one through SQLAlchemy (about 150 µs less
    here), which adds up in consumers that run a dozen statements per small batch. Use ``$n``
    parameters; rows come back as ``asyncpg.Record``."""
    raw = await conn.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
    if not driver.is_in_transaction():
        # SQLAlchemy opens the transaction with its first statement; none may run before.
        await conn.execute(sa.text("SELECT 1"))
    return driver
