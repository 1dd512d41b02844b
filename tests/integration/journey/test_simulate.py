"""Simulation against the live engine: a draft replayed over the events profile stored reports
the entries and sends that the same journey, once active, then makes from the same events —
and the simulation itself writes and sends nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from kizuna import topics
from kizuna.bus import OutgoingMessage
from kizuna.envelope import Envelope
from kizuna.settings import KizunaSettings
from tests.integration.apps import service_app
from tests.integration.journey.conftest import T0, JourneyApp, _journey_app, journey_settings
from tests.integration.live import served

CUSTOMERS = 40
PUBLISHED_BY_JOURNEYS = (  # through the outbox table, or straight into the log
    "SELECT (SELECT count(*) FROM jr_outbox) + (SELECT count(*) FROM bus_messages"
    " WHERE topic LIKE '%send-requests' OR topic LIKE '%journey-events')"
)
DRAFT = {
    "name": "Cart",
    "trigger": {"type": "event", "event": "Checkout Started"},
    "entry": {"policy": "once_per", "period": "P1D"},
    "goal": {"event": "Order Completed", "within": "P1D", "exit_on_goal": True},
    "holdout_percent": 20,
    "start": "wait",
    "steps": {
        "wait": {
            "type": "wait_for_event",
            "event": "Order Completed",
            "timeout": "PT1H",
            "on_event": None,
            "on_timeout": "reminder",
        },
        "reminder": {"type": "send", "channel": "email", "template": "cart", "next": "later"},
        "later": {"type": "wait", "duration": "PT6H", "next": "coupon"},
        "coupon": {"type": "send", "channel": "email", "template": "coupon"},
    },
}


def raw(
    app: JourneyApp, user: str, kind: str, at_minutes: int, tag: str, **fields: Any
) -> Envelope:
    when = T0 + timedelta(minutes=at_minutes)
    message_id = f"{tag}-{user}-{kind}-{at_minutes}"
    payload = {"type": kind, "userId": user, "messageId": message_id, **fields}
    return Envelope(
        id=message_id,
        type=kind,
        workspace_id=app.workspace_id,
        customer_key=user,
        occurred_at=when,
        received_at=when,
        payload=payload,
    )


def shop_day(app: JourneyApp, start: int, tag: str) -> list[Envelope]:
    """Checkouts over a day; a third buy within 20 minutes, some check out twice."""
    events = []
    for i in range(CUSTOMERS):
        user = f"u{i}"
        at = start + i * 17
        events.append(raw(app, user, "track", at, tag, event="Checkout Started", properties={}))
        if i % 3 == 0:
            events.append(
                raw(app, user, "track", at + 20, tag, event="Order Completed",
                    properties={"order_id": f"{tag}-{i}", "total": 1000})
            )  # fmt: skip
        if i % 5 == 0:  # again three hours later: once_per P1D keeps them out
            events.append(
                raw(app, user, "track", at + 180, tag, event="Checkout Started", properties={})
            )
    return sorted(events, key=lambda e: e.occurred_at)


async def count(app: JourneyApp, sql: str, **params: Any) -> int:
    async with app.journeys.engine.connect() as conn:
        return int(await conn.scalar(sa.text(sql), params) or 0)


async def test_a_draft_simulated_over_stored_events_predicts_what_it_then_does_live(
    database_url: str, topic_prefix: str
) -> None:
    base = journey_settings(database_url, topic_prefix, "postgres")
    profile = service_app("profile", KizunaSettings(**base.model_dump()))
    async with served(profile) as profile_url:
        settings = base.model_copy(update={"journey_profile_url": profile_url})
        async for app in _journey_app(settings):
            await simulate_then_run_live(app)


async def simulate_then_run_live(app: JourneyApp) -> None:
    journey_id = await app.create(DRAFT, activate=False)
    identifies = [
        raw(app, f"u{i}", "identify", -60, "id", traits={"email": f"u{i}@example.com"})
        for i in range(CUSTOMERS)
    ]
    first = shop_day(app, 0, "past")
    await app.bus.publish_batch(
        topics.RAW_EVENTS,
        [OutgoingMessage(e.bus_key, e.to_bytes()) for e in identifies + first],
    )

    async def stored() -> bool:  # by profile, and seen by the journey service
        stored = await count(app, "SELECT count(*) FROM profile_events")
        seen = await count(app, "SELECT count(*) FROM jr_seen_events")
        return stored == seen == len(identifies) + len(first)

    await app.wait_until(stored, timeout=60)
    app.clock.now = T0 + timedelta(days=2)
    outbox_before = await count(app, PUBLISHED_BY_JOURNEYS)

    simulated = await app.client.post(
        f"/v1/journeys/{journey_id}/simulate", json={"days": 7}, headers=app.admin
    )
    assert simulated.status_code == 200, simulated.text
    result = simulated.json()
    assert result["events_replayed"] == len(first)
    assert await count(app, "SELECT count(*) FROM jr_runs") == 0, "nothing written"
    assert await count(app, PUBLISHED_BY_JOURNEYS) == outbox_before
    assert result["entered"] == CUSTOMERS  # the second checkouts were kept out
    buyers = len(range(0, CUSTOMERS, 3))
    assert result["exited_by_goal"] == buyers
    sent = {s["step_id"]: s for s in result["steps"]}
    assert sent["reminder"]["sent"] + sum(sent["reminder"]["skipped"].values()) == (
        CUSTOMERS - buyers
    )

    # the same day of shopping, live, with the journey active
    await app.activate(journey_id)
    start = 3 * 24 * 60
    for event in shop_day(app, start, "live"):
        await app.tick(seconds=(event.occurred_at - app.clock.now).total_seconds())
        await app.bus.publish_batch(
            topics.RAW_EVENTS, [OutgoingMessage(event.bus_key, event.to_bytes())]
        )

        async def seen(event_id: str = event.id) -> bool:
            return bool(
                await count(
                    app, "SELECT count(*) FROM jr_seen_events WHERE event_id = :e",
                    e=event_id,
                )
            )  # fmt: skip

        await app.wait_until(seen, timeout=30)
    await app.tick(days=2)

    live_entered = await count(
        app, "SELECT count(*) FROM jr_runs WHERE journey_id = :j", j=journey_id
    )
    assert live_entered == result["entered"]
    assert await count(app, "SELECT count(*) FROM jr_runs WHERE holdout") == result["holdout"]
    assert (
        await count(app, "SELECT count(*) FROM jr_runs WHERE status = 'goal'")
        == result["exited_by_goal"]
    )
    for step_id, step in sent.items():
        live_sent = await count(
            app,
            "SELECT count(*) FROM jr_steps WHERE step_id = :s AND outcome = 'sent'",
            s=step_id,
        )
        assert live_sent == step["sent"], step_id
    assert result["messages"] > 0

    refused = await app.create(
        {**DRAFT, "name": "Birthday", "trigger": {"type": "date", "trait": "birthday"}},
        activate=False,
    )
    answer = await app.client.post(
        f"/v1/journeys/{refused}/simulate", json={"days": 7}, headers=app.admin
    )
    assert answer.status_code == 422
    assert "event triggers" in answer.json()["error"]["message"]
