"""The outbox on a real PostgreSQL: on the PostgreSQL event log a transaction's batch goes
straight into the log, all or nothing; elsewhere it goes through the table, whose publisher
keeps using the pending index however stale the table's statistics are."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna.bus import Bus
from kizuna.bus.factory import bus_from_settings
from kizuna.bus.kafka import KafkaBus
from kizuna.bus.pglog import PostgresLogBus
from kizuna.db import asyncpg_dsn, create_engine
from kizuna.envelope import Envelope
from kizuna.outbox import Outbox, OutboxBatch
from kizuna.settings import KizunaSettings
from tests.conftest import database_url_on
from tests.helpers import read_topic

TOPIC = "outbox-test"
OTHER = "outbox-other"
PENDING_READ = "%FROM jr_outbox WHERE published_at IS NULL ORDER BY id%"


def one_event(event_id: str) -> list[Envelope]:
    return [Envelope.new("x.happened", "ws", "c1", {}, event_id=event_id)]


async def test_the_pending_read_is_planned_afresh_while_statistics_say_the_table_is_empty(
    settings: KizunaSettings, database_url: str
) -> None:
    """PostgreSQL may settle on a generic plan after five executions of a prepared statement.
    Made while the table was small (statistics taken when it was empty, as on a fresh
    install), that plan scans the whole table and sorts it, which only gets slower as
    published rows pile up. The publisher asks for a custom plan every time instead."""
    engine = create_engine(database_url, pool_size=1)  # one connection: one statement cache
    bus = bus_from_settings(settings)
    await bus.start()
    outbox = Outbox("jr_outbox", lock_key=0x7E57)
    try:
        await bus.ensure_topics([TOPIC])
        async with engine.begin() as conn:
            await conn.execute(sa.text("ANALYZE jr_outbox"))
        for n in range(8):
            async with engine.begin() as conn:
                await outbox.add(conn, TOPIC, one_event(f"e{n}"))
            assert await outbox.publish_pending(engine, bus) == 1
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO jr_outbox (event_id, topic, key, value, published_at)"
                    " SELECT 'old-' || g, :t, 'k', '\\x00'::bytea, now()"
                    " FROM generate_series(1, 20000) g"
                ),
                {"t": TOPIC},
            )
            await outbox.add(conn, TOPIC, one_event("late"))
        assert await outbox.publish_pending(engine, bus) == 1

        async with engine.connect() as conn:
            plans = (
                await conn.execute(
                    sa.text(
                        "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                        " WHERE statement LIKE :read AND statement NOT LIKE '%pg_prepared%'"
                    ),
                    {"read": PENDING_READ},
                )
            ).one()
        assert (plans.generic_plans, plans.custom_plans >= 9) == (0, True)
    finally:
        await bus.close()
        await engine.dispose()


async def _ids_on(bus: Bus, topic: str, at_least: int) -> list[str]:
    messages = await read_topic(bus, topic, at_least, settle=0.3)
    return [Envelope.from_bytes(m.value).id for m in messages]


async def _table_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(sa.text("SELECT count(*) FROM jr_outbox")) or 0)


async def test_a_batch_goes_straight_into_the_log_of_its_own_database_at_commit(
    settings: KizunaSettings, database_url: str
) -> None:
    engine = create_engine(database_url, pool_size=2)
    bus = bus_from_settings(settings)
    await bus.start()
    outbox = Outbox("jr_outbox", lock_key=0x7E57)
    outbox.writes_to(bus, engine)

    async def fail_while_deciding() -> None:
        async with outbox.transaction(engine) as (_, batch):
            batch.add(TOPIC, one_event("lost"))
            raise RuntimeError("crash")

    async def fail_after_the_append() -> None:
        async with engine.begin() as conn:
            batch = OutboxBatch()
            batch.add(TOPIC, one_event("lost-too"))
            await outbox.write(conn, batch)
            raise RuntimeError("crash")

    try:
        await bus.ensure_topics([TOPIC, OTHER])
        for fail in (fail_while_deciding, fail_after_the_append):
            with pytest.raises(RuntimeError):
                await fail()
        async with outbox.transaction(engine) as (_, batch):
            batch.add(OTHER, one_event("o1"))
            batch.add(TOPIC, one_event("t1") + one_event("t2"))
            batch.add(TOPIC, one_event("t1"))  # staged twice, written once
        assert outbox.log_bus is bus
        assert await _ids_on(bus, TOPIC, 2) == ["t1", "t2"]
        assert await _ids_on(bus, OTHER, 1) == ["o1"]
        assert await _table_rows(engine) == 0
        assert not outbox.pending.is_set(), "no publisher hop"
    finally:
        await bus.close()
        await engine.dispose()


async def test_concurrent_batches_over_the_same_topics_all_commit(
    settings: KizunaSettings, database_url: str
) -> None:
    """Each append holds its partitions' locks until the commit. Staged in opposite orders,
    two topics would deadlock two such transactions; written in topic order they queue."""
    engine = create_engine(database_url, pool_size=12)
    bus = bus_from_settings(settings)
    await bus.start()
    outbox = Outbox("jr_outbox", lock_key=0x7E57)
    outbox.writes_to(bus, engine)

    async def one(n: int) -> None:
        async with outbox.transaction(engine) as (_, batch):
            first, second = (TOPIC, OTHER) if n % 2 else (OTHER, TOPIC)
            for topic in (first, second):  # customers over every partition of each topic
                batch.add(
                    topic,
                    [Envelope.new("x", "ws", f"c{k}", {}, event_id=f"{n}-{k}") for k in range(16)],
                )

    try:
        await bus.ensure_topics([TOPIC, OTHER])
        for start in range(0, 120, 12):
            await asyncio.gather(*(one(n) for n in range(start, start + 12)))
        for topic in (TOPIC, OTHER):
            ids = await _ids_on(bus, topic, 120 * 16)
            assert len(ids) == len(set(ids)) == 120 * 16
    finally:
        await bus.close()
        await engine.dispose()


async def test_a_batch_goes_through_the_table_when_the_log_is_elsewhere(
    settings: KizunaSettings, database_url: str, pg_server_url: str
) -> None:
    engine = create_engine(database_url, pool_size=1)
    bus = bus_from_settings(settings)
    await bus.start()
    outbox = Outbox("jr_outbox", lock_key=0x7E57)
    elsewhere = PostgresLogBus(asyncpg_dsn(database_url_on(pg_server_url, "other")), "k.", 4)
    outbox.writes_to(elsewhere, engine)
    assert outbox.log_bus is None
    on_a_socket = PostgresLogBus("postgresql://u@/bench?host=/run/other", "k.", 4)
    ours_on_a_socket = create_engine("postgresql://u@/bench?host=/run/ours")  # never connects
    outbox.writes_to(on_a_socket, ours_on_a_socket)
    await ours_on_a_socket.dispose()
    assert outbox.log_bus is None, "hosts in the query string count"
    outbox.writes_to(KafkaBus("127.0.0.1:9", "k.", 4), engine)
    assert outbox.log_bus is None
    try:
        await bus.ensure_topics([TOPIC])
        async with outbox.transaction(engine) as (_, batch):
            batch.add(TOPIC, one_event("t1"))
        assert outbox.pending.is_set(), "the publisher is woken"
        assert await _table_rows(engine) == 1
        assert await outbox.publish_pending(engine, bus) == 1
        assert await _ids_on(bus, TOPIC, 1) == ["t1"]
    finally:
        await bus.close()
        await engine.dispose()
