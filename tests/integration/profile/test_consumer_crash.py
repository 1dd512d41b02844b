"""The profile service is SIGKILLed in the middle of a stream of 20,000 events and restarted:
every event is stored exactly once, every counter is exact, nothing is missing downstream."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from kizuna import topics
from kizuna.bus import OutgoingMessage
from kizuna.bus.factory import bus_from_settings
from kizuna.db import create_engine
from kizuna.embedded_pg import free_port
from kizuna.envelope import Envelope
from kizuna_profile.settings import ProfileSettings
from tests.helpers import read_topic
from tests.integration.profile.conftest import T0

PEOPLE = 400
WORKSPACE = "ws_crash"


@dataclass
class Person:
    index: int
    events: list[Envelope] = field(default_factory=list)
    revenue: Decimal = Decimal(0)
    orders: int = 0

    def add(self, type_: str, key: dict[str, str], minute: int, **payload: object) -> None:
        event_id = f"p{self.index}-{len(self.events)}"
        when = T0 + timedelta(minutes=minute)
        self.events.append(
            Envelope(
                id=event_id,
                type=type_,
                workspace_id=WORKSPACE,
                customer_key=key.get("userId") or key["anonymousId"],
                occurred_at=when,
                received_at=when,
                payload={"type": type_, "messageId": event_id, **key, **payload},
            )
        )


def stream() -> list[Person]:
    people = []
    for p in range(PEOPLE):
        person = Person(p)
        browser, phone, user = (
            {"anonymousId": f"a{p}"},
            {"anonymousId": f"d{p}"},
            {"userId": f"u{p}"},
        )
        for i in range(20):
            person.add(
                "track",
                browser,
                i,
                event="Product Viewed",
                properties={"product_id": f"sku{i % 7}"},
            )
        person.add("identify", {**user, **browser}, 21, traits={"email": f"p{p}@example.com"})
        for i in range(17):
            person.add("page", user, 22 + i, name="Page")
        for k in range(3):
            total = Decimal(100 * (k + 1) + p)
            person.add(
                "track",
                user,
                40 + k,
                event="Order Completed",
                properties={"order_id": f"o{p}-{k}", "total": float(total)},
            )
            person.revenue += total
            person.orders += 1
        person.add("identify", phone, 45, traits={"email": f"P{p}@example.com"})
        for i in range(8):
            person.add("screen", phone, 46 + i, name="Home")
        people.append(person)
    return people


@contextmanager
def profile_service(settings: ProfileSettings) -> Iterator[subprocess.Popen[str]]:
    env = {
        **os.environ,
        "KIZUNA_DATABASE_URL": settings.database_dsn(),
        "KIZUNA_BUS_URL": settings.bus_url,
        "KIZUNA_TOPIC_PREFIX": settings.topic_prefix,
        "KIZUNA_BUS_PARTITIONS": str(settings.bus_partitions),
        "KIZUNA_SECRET_KEY": "x" * 40,
        "KIZUNA_LOG_LEVEL": "WARNING",
        "KIZUNA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "kizuna.cli", "serve", "profile", "--port", str(free_port())],
        env=env,
        text=True,
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        child.wait()


@pytest.fixture(params=["postgres", pytest.param("kafka", marks=pytest.mark.kafka)])
def crash_settings(
    request: pytest.FixtureRequest, database_url: str, topic_prefix: str
) -> ProfileSettings:
    bus_url = "postgres"
    if request.param == "kafka":
        bus_url = f"kafka://{request.getfixturevalue('kafka_bootstrap')}"
    return ProfileSettings(
        database_url=database_url, bus_url=bus_url, topic_prefix=topic_prefix, bus_partitions=4
    )


async def test_sigkill_mid_stream_stores_each_event_once_and_counts_exactly(
    crash_settings: ProfileSettings,
) -> None:
    people = stream()
    everything = [e for person in people for e in person.events]
    rng = random.Random(7)
    published = everything + rng.sample(everything, 500)  # resends of the same messageIds
    rng.shuffle(published)
    engine = create_engine(crash_settings.database_dsn(), pool_size=2)
    bus = bus_from_settings(crash_settings)
    await bus.start()
    await bus.ensure_topics(topics.ALL_TOPICS)

    async def stored() -> int:
        async with engine.connect() as conn:
            return int(await conn.scalar(sa.text("SELECT count(*) FROM profile_events")) or 0)

    try:
        for start in range(0, len(published), 1000):
            await bus.publish_batch(
                topics.RAW_EVENTS,
                [OutgoingMessage(e.bus_key, e.to_bytes()) for e in published[start : start + 1000]],
            )
        with profile_service(crash_settings) as first:
            async with asyncio.timeout(120):
                while await stored() < len(everything) // 4:
                    assert first.poll() is None, "the service died on its own"
                    await asyncio.sleep(0.05)
            first.send_signal(signal.SIGKILL)
        killed_at = await stored()
        assert killed_at < len(everything), "killed in the middle of the stream"

        with profile_service(crash_settings):
            async with asyncio.timeout(180):
                while await stored() < len(everything):
                    await asyncio.sleep(0.2)
            await asyncio.sleep(2)  # anything processed twice would show now

        async with engine.connect() as conn:
            assert await stored() == len(everything)
            customers = (
                (await conn.execute(sa.text("SELECT * FROM profile_customers"))).mappings().all()
            )
            owner = {
                (row.kind, row.value): row.customer_id
                for row in await conn.execute(sa.text("SELECT * FROM profile_identifiers"))
            }
            per_customer = {
                row.customer_id: row.n
                for row in await conn.execute(
                    sa.text("SELECT customer_id, count(*) AS n FROM profile_events GROUP BY 1")
                )
            }
        assert len(customers) == PEOPLE, "each person is one customer"
        by_id = {row["id"]: row for row in customers}
        for person in people:
            p = person.index
            customer = owner["user_id", f"u{p}"]
            for kind, value in (
                ("anonymous_id", f"a{p}"),
                ("anonymous_id", f"d{p}"),
                ("email", f"p{p}@example.com"),
            ):
                assert owner[kind, value] == customer, (p, kind)
            row = by_id[customer]
            assert row["events_count"] == len(person.events) == per_customer[customer]
            assert row["orders_count"] == person.orders
            assert row["revenue_total"] == person.revenue

        resolved = await read_topic(bus, topics.RESOLVED_EVENTS, len(everything), timeout=120)
        assert {Envelope.from_bytes(m.value).id for m in resolved} == {e.id for e in everything}
    finally:
        await bus.close()
        await engine.dispose()
