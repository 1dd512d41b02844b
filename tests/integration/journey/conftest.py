from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from kizuna import topics
from kizuna.bus import Bus, OutgoingMessage
from kizuna.bus.factory import bus_from_settings
from kizuna.db import create_engine
from kizuna.envelope import Envelope
from kizuna_journey.main import create_app
from kizuna_journey.runtime import Journeys
from kizuna_journey.settings import JourneySettings
from tests.helpers import FakeClock, make_workspace, read_topic
from tests.integration.apps import running

T0 = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)  # 12:00 in Tokyo, a Monday
_ids = itertools.count(1)


@dataclass
class JourneyApp:
    client: httpx.AsyncClient
    app_state: Any
    workspace_id: str
    admin_key: str
    bus: Bus
    clock: FakeClock
    settings: JourneySettings
    published: list[str] = field(default_factory=list)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    @property
    def journeys(self) -> Journeys:
        journeys: Journeys = self.app_state.journeys
        return journeys

    def event(
        self,
        customer: str,
        type_: str = "track",
        name: str | None = None,
        properties: dict[str, Any] | None = None,
        traits: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> Envelope:
        payload: dict[str, Any] = {"type": type_, "customerId": customer}
        if name is not None:
            payload["event"] = name
            payload["properties"] = properties or {}
        if traits is not None:
            payload["traits"] = traits
        when = at or self.clock.now
        return Envelope(
            id=f"ev-{next(_ids)}",
            type=type_,
            workspace_id=self.workspace_id,
            customer_key=customer,
            occurred_at=when,
            received_at=when,
            payload=payload,
        )

    def segment_change(
        self, customer: str, segment: str, *, entered: bool = True, kind: str = "rfm"
    ) -> Envelope:
        return Envelope(
            id=f"seg-{next(_ids)}",
            type="segment.entered" if entered else "segment.exited",
            workspace_id=self.workspace_id,
            customer_key=customer,
            occurred_at=self.clock.now,
            received_at=self.clock.now,
            payload={"segment_id": segment, "segment_name": segment, "kind": kind},
        )

    async def send(self, *events: Envelope) -> None:
        """Publishes the events and waits until the journey service has handled them."""
        by_topic: dict[str, list[OutgoingMessage]] = {}
        for event in events:
            topic = (
                topics.SEGMENT_CHANGES
                if event.type.startswith("segment.")
                else topics.RESOLVED_EVENTS
            )
            by_topic.setdefault(topic, []).append(OutgoingMessage(event.bus_key, event.to_bytes()))
        for topic, messages in by_topic.items():
            await self.bus.publish_batch(topic, messages)
        ids = [e.id for e in events]
        await self.wait_until(lambda: self._seen(ids))

    async def _seen(self, ids: list[str]) -> bool:
        async with self.journeys.engine.connect() as conn:
            count = await conn.scalar(
                sa.text("SELECT count(*) FROM jr_seen_events WHERE event_id = ANY(:ids)"),
                {"ids": ids},
            )
        return bool(count == len(set(ids)))

    async def identify(self, customer: str, **traits: Any) -> None:
        await self.send(self.event(customer, "identify", traits=traits))

    async def track(self, customer: str, name: str, **properties: Any) -> None:
        await self.send(self.event(customer, "track", name, properties))

    async def tick(self, **delta: float) -> int:
        """Moves the clock and fires what became due."""
        self.clock.advance(**delta)
        fired = await self.journeys.fire_due()
        await self.wait_until(self._nothing_due)  # the background loop may hold some
        return fired

    async def _nothing_due(self) -> bool:
        async with self.journeys.engine.connect() as conn:
            due = await conn.scalar(
                sa.text(
                    "SELECT (SELECT count(*) FROM jr_runs r JOIN jr_journeys j"
                    " ON j.workspace_id = r.workspace_id AND j.id = r.journey_id"
                    " AND j.status = 'active' WHERE r.due_at <= :now)"
                    " + (SELECT count(*) FROM jr_schedules WHERE due_at <= :now)"
                ),
                {"now": self.clock.now},
            )
        return bool(due == 0)

    async def create(self, body: dict[str, Any], activate: bool = True) -> str:
        response = await self.client.post("/v1/journeys", json=body, headers=self.admin)
        assert response.status_code == 201, response.text
        journey_id: str = response.json()["id"]
        if activate:
            await self.activate(journey_id)
        return journey_id

    async def activate(self, journey_id: str) -> None:
        response = await self.client.post(f"/v1/journeys/{journey_id}/activate", headers=self.admin)
        assert response.status_code == 200, response.text

    async def from_template(self, name: str, **options: Any) -> str:
        response = await self.client.post(
            f"/v1/journeys/from-template/{name}", json={"options": options}, headers=self.admin
        )
        assert response.status_code == 201, response.text
        journey_id: str = response.json()["id"]
        await self.activate(journey_id)
        return journey_id

    async def steps(self, customer: str, journey_id: str | None = None) -> list[dict[str, Any]]:
        """Every step the customer's runs executed, oldest first."""
        async with self.journeys.engine.connect() as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT step_id, step_type, outcome, detail, journey_id, run_id, at"
                    " FROM jr_steps WHERE workspace_id = :ws AND customer_id = :c"
                    " AND (CAST(:j AS text) IS NULL OR journey_id = :j)"
                    " ORDER BY at, seq"
                ),
                {"ws": self.workspace_id, "c": customer, "j": journey_id},
            )
            return [dict(row._mapping) for row in rows.all()]

    async def sent(self, customer: str, journey_id: str | None = None) -> list[str]:
        return [
            s["step_id"] for s in await self.steps(customer, journey_id) if s["outcome"] == "sent"
        ]

    async def runs(self, customer: str) -> list[dict[str, Any]]:
        async with self.journeys.engine.connect() as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT * FROM jr_runs WHERE workspace_id = :ws AND customer_id = :c"
                    " ORDER BY entered_at, run_id"
                ),
                {"ws": self.workspace_id, "c": customer},
            )
            return [dict(row._mapping) for row in rows.all()]

    async def send_requests(self, at_least: int) -> list[Envelope]:
        await self.journeys.publish_outbox()
        messages = await read_topic(self.bus, topics.SEND_REQUESTS, at_least, settle=0.5)
        return [Envelope.from_bytes(m.value) for m in messages]

    async def journey_events(self, at_least: int, settle: float = 0.5) -> list[Envelope]:
        """Everything on journey-events so far, in bus order (one customer's in order)."""
        await self.journeys.publish_outbox()
        messages = await read_topic(self.bus, topics.JOURNEY_EVENTS, at_least, settle=settle)
        return [Envelope.from_bytes(m.value) for m in messages]

    async def wait_until(self, condition: Callable[[], Any], timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not await condition():
                await asyncio.sleep(0.02)


def journey_settings(database_url: str, topic_prefix: str, bus_url: str) -> JourneySettings:
    return JourneySettings(
        database_url=database_url,
        bus_url=bus_url,
        topic_prefix=topic_prefix,
        bus_partitions=4,
        log_level="WARNING",
        log_format="console",
        consumer_batch_size=200,
    )


@pytest.fixture(params=["postgres", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus_url(request: pytest.FixtureRequest) -> str:
    if request.param == "kafka":
        return f"kafka://{request.getfixturevalue('kafka_bootstrap')}"
    return "postgres"


async def _journey_app(settings: JourneySettings) -> AsyncIterator[JourneyApp]:
    engine = create_engine(settings.database_dsn(), pool_size=1)
    workspace_id, _, admin = await make_workspace(engine, "shop")
    await engine.dispose()
    bus = bus_from_settings(settings)
    await bus.start()
    clock = FakeClock(T0)
    app = create_app(settings)
    try:
        async with running(app) as client:
            app.state.journeys.clock = clock
            yield JourneyApp(client, app.state, workspace_id, admin.secret, bus, clock, settings)
    finally:
        await bus.close()


@pytest.fixture
async def journey_app(
    database_url: str, topic_prefix: str, bus_url: str
) -> AsyncIterator[JourneyApp]:
    async for app in _journey_app(journey_settings(database_url, topic_prefix, bus_url)):
        yield app


@pytest.fixture
async def pg_journey_app(database_url: str, topic_prefix: str) -> AsyncIterator[JourneyApp]:
    """The same app on the PostgreSQL log only, for tests about rules rather than the bus."""
    async for app in _journey_app(journey_settings(database_url, topic_prefix, "postgres")):
        yield app


async def nudge_many(app: JourneyApp, customers: list[str]) -> str:
    """An API-triggered journey (wait an hour, then mail) with every customer enrolled and
    given an address: as many timers due an hour later."""
    journey_id = await app.create(
        {
            "name": "Nudge",
            "trigger": {"type": "api"},
            "start": "wait",
            "steps": {
                "wait": {"type": "wait", "duration": "PT1H", "next": "mail"},
                "mail": {"type": "send", "channel": "email", "template": "nudge"},
            },
        }
    )
    await give_addresses(app, customers)
    response = await app.client.post(
        f"/v1/journeys/{journey_id}/enrolments",
        json={"customer_ids": customers, "request_id": "nudge"},
        headers=app.admin,
    )
    assert response.json()["enrolled"] == len(customers)
    return journey_id


async def give_addresses(app: JourneyApp, customers: list[str]) -> None:
    """The journey's mirror learns an email address for each customer (<id>@example.com)."""
    async with app.journeys.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO jr_customers (workspace_id, customer_id, traits)"
                " SELECT :ws, c, jsonb_build_object('email', c || '@example.com')"
                " FROM unnest(CAST(:c AS text[])) c"
            ),
            {"ws": app.workspace_id, "c": customers},
        )
