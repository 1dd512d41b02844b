"""The outbox publisher on a real PostgreSQL: its reads keep using the pending index however
stale the table's statistics are."""

from __future__ import annotations

import sqlalchemy as sa

from kizuna.bus.factory import bus_from_settings
from kizuna.db import create_engine
from kizuna.envelope import Envelope
from kizuna.outbox import Outbox
from kizuna.settings import KizunaSettings

TOPIC = "outbox-test"
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
