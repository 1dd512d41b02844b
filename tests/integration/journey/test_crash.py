"""Killed while 10,000 timers are due and restarted, the journey service fires every step
exactly once: one step log entry and one send request id per run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from kizuna import topics
from kizuna.envelope import Envelope
from kizuna_journey.settings import JourneySettings
from tests.helpers import read_topic
from tests.integration.journey.conftest import JourneyApp, nudge_many

RUNS = 10_000


def timer_process(settings: JourneySettings, now: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "KIZUNA_DATABASE_URL": settings.database_dsn(),
        "KIZUNA_BUS_URL": settings.bus_url,
        "KIZUNA_TOPIC_PREFIX": settings.topic_prefix,
        "KIZUNA_BUS_PARTITIONS": str(settings.bus_partitions),
        "KIZUNA_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("timers_proc.py")), now],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


async def test_killed_with_10000_timers_due_every_step_fires_once(
    journey_app: JourneyApp,
) -> None:
    app = journey_app
    customers = [f"k{i:05d}" for i in range(RUNS)]
    await nudge_many(app, customers)
    # This app's clock stays before the runs are due: only the child processes fire them.
    later = (app.clock.now + timedelta(hours=2)).isoformat()

    async def sent() -> int:
        async with app.journeys.engine.connect() as conn:
            return int(
                await conn.scalar(sa.text("SELECT count(*) FROM jr_steps WHERE outcome = 'sent'"))
                or 0
            )

    first = timer_process(app.settings, later)
    async with asyncio.timeout(120):
        while await sent() < RUNS // 4:
            await asyncio.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert await sent() < RUNS, "killed while timers were due"

    second = timer_process(app.settings, later)
    out, _ = await asyncio.to_thread(second.communicate, timeout=240)
    assert "done" in out
    assert await sent() == RUNS

    async with app.journeys.engine.connect() as conn:
        visits = await conn.execute(
            sa.text("SELECT status, visits->>'mail' AS mail, count(*) FROM jr_runs GROUP BY 1, 2")
        )
        assert [tuple(row) for row in visits.all()] == [("completed", "1", RUNS)]
    messages = await read_topic(app.bus, topics.SEND_REQUESTS, RUNS, timeout=120)
    events = [Envelope.from_bytes(m.value) for m in messages]
    per_run = Counter(e.payload["run_id"] for e in {e.id: e for e in events}.values())
    assert len(per_run) == RUNS
    assert set(per_run.values()) == {1}  # one send id per run; a repeat is the same event
