"""Two journey replicas firing the same due timers at once: every step fires once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa

from kizuna import topics
from kizuna.db import create_engine
from kizuna.envelope import Envelope
from kizuna_journey.runtime import Journeys
from tests.helpers import read_topic
from tests.integration.journey.conftest import JourneyApp, nudge_many

RUNS = 3000


async def test_replicas_share_due_timers_and_none_fires_twice(pg_journey_app: JourneyApp) -> None:
    app = pg_journey_app
    customers = [f"r{i:05d}" for i in range(RUNS)]
    await nudge_many(app, customers)
    later = app.clock.now + timedelta(hours=2)
    engines = [create_engine(app.settings.database_dsn(), pool_size=2) for _ in range(2)]
    try:
        replicas = [
            Journeys(engine, app.bus, timer_batch=100, clock=lambda: later) for engine in engines
        ]
        fired = await asyncio.gather(*(replica.fire_due() for replica in replicas))
        assert sum(fired) == RUNS
        assert all(count > 0 for count in fired), "both replicas took a share"
    finally:
        for engine in engines:
            await engine.dispose()
    async with app.journeys.engine.connect() as conn:
        sent = await conn.scalar(
            sa.text("SELECT count(*) FROM jr_steps WHERE step_id = 'mail' AND outcome = 'sent'")
        )
    assert sent == RUNS
    requests = await read_topic(app.bus, topics.SEND_REQUESTS, RUNS, settle=0.5)
    events = await read_topic(app.bus, topics.JOURNEY_EVENTS, 2 * RUNS, settle=0.5)
    # a send request each, and one journey.entered and one journey.completed per run
    for messages, expected in ((requests, RUNS), (events, 2 * RUNS)):
        ids = [Envelope.from_bytes(m.value).id for m in messages]
        assert len(ids) == len(set(ids)) == expected
