"""Killed mid-sweep and restarted, the segmenter announces every tier change, each under one
id, and no change twice with different ids."""

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
from kizuna.bus.factory import bus_from_settings
from kizuna.db import create_engine
from kizuna.envelope import Envelope
from kizuna_segmenter import handlers
from kizuna_segmenter.settings import SegmenterSettings
from tests.helpers import read_topic
from tests.integration.segmenter.conftest import T0

CUSTOMERS = 1500


def order(i: int) -> Envelope:
    return Envelope(
        id=f"ev-{i}",
        type="track",
        workspace_id="ws_crash",
        customer_key=f"c{i:05d}",
        occurred_at=T0,
        received_at=T0,
        payload={
            "type": "track",
            "event": "Order Completed",
            "properties": {"order_id": f"o{i}", "total": 100},
        },
    )


def sweeper(settings: SegmenterSettings, now: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "KIZUNA_DATABASE_URL": settings.database_dsn(),
        "KIZUNA_BUS_URL": settings.bus_url,
        "KIZUNA_TOPIC_PREFIX": settings.topic_prefix,
        "KIZUNA_BUS_PARTITIONS": str(settings.bus_partitions),
        "KIZUNA_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("sweep_proc.py")), now],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


async def test_killed_mid_sweep_every_change_is_announced_under_one_id(
    segmenter_settings: SegmenterSettings,
) -> None:
    settings = segmenter_settings
    engine = create_engine(settings.database_dsn(), pool_size=2)
    bus = bus_from_settings(settings)
    await bus.start()
    await bus.ensure_topics(topics.ALL_TOPICS)
    try:
        later = T0 + timedelta(days=45)
        async with engine.begin() as conn:
            # Boundaries as of the sweep, so that only time moves customers: at 45 days a
            # first-time buyer goes from New (R5) to About to Sleep (R3).
            await conn.execute(
                sa.text(
                    "INSERT INTO seg_bounds VALUES ('ws_crash', '{10,30,60,120}', '{1,1,1,2}',"
                    " '{100,100,100,100}', :n, :at)"
                ),
                {"n": CUSTOMERS, "at": later},
            )
            await handlers.on_events(conn, [order(i) for i in range(CUSTOMERS)], T0)
            await conn.execute(sa.text("UPDATE seg_outbox SET published_at = now()"))

        async def history() -> int:
            async with engine.connect() as conn:
                return int(
                    await conn.scalar(
                        sa.text(
                            "SELECT count(*) FROM seg_tier_history WHERE to_tier = 'about_to_sleep'"
                        )
                    )
                    or 0
                )

        first = sweeper(settings, later.isoformat())
        async with asyncio.timeout(60):
            while await history() < CUSTOMERS // 3:
                await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = await history()
        assert killed_at < CUSTOMERS, "killed mid-sweep"

        second = sweeper(settings, later.isoformat())
        out, _ = await asyncio.to_thread(second.communicate, timeout=120)
        assert "done" in out
        assert await history() == CUSTOMERS

        messages = await read_topic(bus, topics.SEGMENT_CHANGES, 2 * CUSTOMERS, timeout=60)
        events = [Envelope.from_bytes(m.value) for m in messages]
        by_id: dict[str, set[bytes]] = {}
        for message, event in zip(messages, events, strict=True):
            by_id.setdefault(event.id, set()).add(message.value)
        assert all(len(copies) == 1 for copies in by_id.values()), "a repeat is the same event"
        per_customer = Counter((e.customer_key, e.type) for e in {e.id: e for e in events}.values())
        assert set(per_customer.values()) == {1}
        assert len(per_customer) == 2 * CUSTOMERS  # exited New, entered About to Sleep: each
    finally:
        await bus.close()
        await engine.dispose()
