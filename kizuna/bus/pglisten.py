"""One LISTEN session per process for every consumer of the PostgreSQL event log in it.

Before version 19, PostgreSQL signals every session of a database that listens on any channel
at every NOTIFY, whatever the channel, and each signalled session runs a transaction to read
the notification queue. With a session per consumer, those reads were most of the database's
transactions on a busy log (2.2 per event in the latency benchmark, against 0.7 of real work).
So the consumers of a process share one session, and each topic has its own channel: the
session is sent only the notifications of its process's topics, and wakes only the consumers
of the topic appended to.

If the session is lost, consumers still read at least every ``rebalance_interval``; the next
fetch opens a new session and listens again, and every consumer then reads once, for what it
may have missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterable

import asyncpg

NOTIFY_PREFIX = "kizuna_bus:"
MAX_CHANNEL_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1
CONNECT_TIMEOUT = 10.0  # bounds how long a consumer's close waits behind a reconnect
CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # shutdown, cannot connect now, cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.exceptions.TransactionRollbackError,  # deadlock, serialization failure
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby during failover
)
# The server notices a client whose host vanished and frees what its session held.
KEEPALIVE = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "30000",
}


def notify_channel(topic: str) -> str:
    """The channel an append to ``topic`` (its full name) notifies. A name too long for a
    channel is replaced by its digest."""
    channel = NOTIFY_PREFIX + topic
    if len(channel.encode()) <= MAX_CHANNEL_BYTES:
        return channel
    return NOTIFY_PREFIX + hashlib.sha256(topic.encode()).hexdigest()[:40]


class SharedListener:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._waiters: dict[str, set[asyncio.Event]] = {}

    @property
    def server_pid(self) -> int | None:
        """The listening session's backend, if there is one (for tests and diagnostics)."""
        return None if self._conn is None else self._conn.get_server_pid()

    async def subscribe(self, channels: Iterable[str], wakeup: asyncio.Event) -> None:
        async with self._lock:
            conn = await self._connected()
            for channel in channels:
                if channel not in self._waiters:
                    self._waiters[channel] = set()
                    await conn.add_listener(channel, self._dispatch)
                self._waiters[channel].add(wakeup)

    async def unsubscribe(self, channels: Iterable[str], wakeup: asyncio.Event) -> None:
        async with self._lock:
            for channel in channels:
                waiting = self._waiters.get(channel)
                if waiting is None:
                    continue
                waiting.discard(wakeup)
                if not waiting:
                    del self._waiters[channel]
                    conn = self._conn
                    if conn is not None and not conn.is_closed():
                        with contextlib.suppress(*CONNECTION_ERRORS):
                            await conn.remove_listener(channel, self._dispatch)
            if not self._waiters:
                await self._close_connection()

    async def ensure(self) -> None:
        """Listens again if the session was lost; if that fails, the next call tries again."""
        if self._alive() or not self._waiters:
            return
        async with self._lock:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self._connected()

    async def close(self) -> None:
        async with self._lock:
            self._waiters.clear()
            await self._close_connection()

    def _alive(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def _connected(self) -> asyncpg.Connection:
        if self._alive():
            assert self._conn is not None
            return self._conn
        conn = await asyncpg.connect(
            self.dsn, timeout=CONNECT_TIMEOUT, command_timeout=60, server_settings=KEEPALIVE
        )
        try:
            conn.add_termination_listener(self._lost)
            for channel in self._waiters:
                await conn.add_listener(channel, self._dispatch)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self._wake_all()  # appends made while no session listened were not notified
        return conn

    async def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(*CONNECTION_ERRORS):
                await conn.close(timeout=5)

    def _lost(self, conn: object) -> None:
        if conn is self._conn:
            self._conn = None
            self._wake_all()

    def _wake_all(self) -> None:
        for waiting in self._waiters.values():
            for wakeup in waiting:
                wakeup.set()

    def _dispatch(self, _conn: object, _pid: object, channel: str, _payload: object) -> None:
        for wakeup in self._waiters.get(channel, ()):
            wakeup.set()
