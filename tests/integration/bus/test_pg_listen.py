"""The PostgreSQL log's consumers in one process share one listening session, on real
PostgreSQL. Reads are polled only every 30 s here, so a consumer that gets its message within
seconds was woken by a notification."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from kizuna.bus import OutgoingMessage
from kizuna.bus.pglisten import notify_channel
from kizuna.bus.pglog import PostgresLogBus, PostgresLogConsumer
from kizuna.db import asyncpg_dsn

SLOW_POLL = 30.0


@pytest.fixture
async def bus(database_url: str, topic_prefix: str) -> AsyncIterator[PostgresLogBus]:
    log = PostgresLogBus(asyncpg_dsn(database_url), topic_prefix, 2, rebalance_interval=SLOW_POLL)
    await log.start()
    await log.ensure_topics(["alpha", "beta"])
    yield log
    await log.close()


async def consumer(bus: PostgresLogBus, group: str, topic: str) -> PostgresLogConsumer:
    member = bus.consumer(group, [topic])
    assert isinstance(member, PostgresLogConsumer)
    await member.start()
    assert await member.fetch(10, 0.1) == []  # joined: owns its partitions
    return member


async def fetch_within(member: PostgresLogConsumer, seconds: float) -> list[bytes]:
    started = time.monotonic()
    batch = await member.fetch(10, SLOW_POLL)
    assert time.monotonic() - started < seconds, "woken by polling, not by a notification"
    return [m.value for m in batch]


async def test_one_session_listens_for_every_consumer_and_each_wakes_for_its_topic(
    bus: PostgresLogBus,
) -> None:
    alpha, beta = await consumer(bus, "ga", "alpha"), await consumer(bus, "gb", "beta")
    try:
        assert await alpha.conn.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
        assert await beta.conn.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
        listener_pid = bus.listener.server_pid
        assert listener_pid is not None

        waiting_beta = asyncio.create_task(fetch_within(beta, 10))
        await asyncio.sleep(0.2)
        await bus.publish_batch("alpha", [OutgoingMessage("k", b"a1")])
        assert await fetch_within(alpha, 10) == [b"a1"]
        assert not waiting_beta.done(), "an append to alpha does not wake beta's consumer"
        await bus.publish_batch("beta", [OutgoingMessage("k", b"b1")])
        assert await waiting_beta == [b"b1"]

        await beta.close()
        assert bus.listener.server_pid == listener_pid, "alpha's consumer still listens"
    finally:
        await alpha.close()
        await beta.close()
    assert bus.listener.server_pid is None, "no consumer left: the session is closed"


async def test_a_lost_listening_session_is_replaced(bus: PostgresLogBus, database_url: str) -> None:
    alpha = await consumer(bus, "ga", "alpha")
    try:
        lost = bus.listener.server_pid
        admin = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", lost)
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
        assert await alpha.fetch(10, 1.0) == []  # the next wait listens again

        replaced = bus.listener.server_pid
        assert replaced is not None
        assert replaced != lost
        waiting = asyncio.create_task(fetch_within(alpha, 10))
        await asyncio.sleep(0.2)
        await bus.publish_batch("alpha", [OutgoingMessage("k", b"after")])
        assert await waiting == [b"after"]
    finally:
        await alpha.close()


def test_channel_names_fit_postgresql() -> None:
    assert notify_channel("kizuna.raw-events") == "kizuna_bus:kizuna.raw-events"
    long_topic = "a-very-long-deployment-prefix." * 3 + "raw-events"
    assert len(notify_channel(long_topic).encode()) <= 63
    assert notify_channel(long_topic) != notify_channel(long_topic + "-2")
