"""An A/B test with an automatic winner: a send to 1,000 customers where 20 % get one of two
mails at once, the opens decide, and four hours later everyone else gets the winner."""

from __future__ import annotations

import random

import sqlalchemy as sa

from kizuna import topics
from kizuna.bus import OutgoingMessage
from tests.integration.journey.conftest import JourneyApp, give_addresses

CUSTOMERS = 1000


async def test_the_test_share_decides_and_the_rest_get_the_winner(
    journey_app: JourneyApp,
) -> None:
    app = journey_app
    journey_id = await app.create(
        {
            "name": "Spring sale",
            "trigger": {"type": "api"},
            "start": "split",
            "steps": {
                "split": {
                    "type": "split",
                    "branches": [
                        {"weight": 50, "next": "mail_a", "name": "plain"},
                        {"weight": 50, "next": "mail_b", "name": "emoji"},
                    ],
                    "winner": {"test_percent": 20, "after": "PT4H", "metric": "opened"},
                },
                "mail_a": {"type": "send", "channel": "email", "template": "sale-a"},
                "mail_b": {"type": "send", "channel": "email", "template": "sale-b"},
            },
        }
    )
    customers = [f"c{i:04d}" for i in range(CUSTOMERS)]
    await give_addresses(app, customers)
    enrolled = await app.client.post(
        f"/v1/journeys/{journey_id}/enrolments",
        json={"customer_ids": customers, "request_id": "sale"},
        headers=app.admin,
    )
    assert enrolled.json()["enrolled"] == CUSTOMERS

    async with app.journeys.engine.connect() as conn:
        tested = (
            await conn.execute(
                sa.text(
                    "SELECT r.customer_id, s.step_id, s.detail->>'send_id' AS send_id"
                    " FROM jr_steps s JOIN jr_runs r ON r.run_id = s.run_id"
                    " WHERE s.outcome = 'sent'"
                )
            )
        ).all()
        held = await conn.scalar(sa.text("SELECT count(*) FROM jr_steps WHERE outcome = 'held'"))
    assert 150 < len(tested) < 250, "about 20 % are in the test"
    assert len(tested) + held == CUSTOMERS

    seeded = random.Random(3)
    opens = [
        app.event(row.customer_id, "track", "Email Opened", {"message_id": row.send_id})
        for row in tested
        if seeded.random() < (0.5 if row.step_id == "mail_b" else 0.1)
    ]
    await app.bus.publish_batch(
        topics.RESOLVED_EVENTS, [OutgoingMessage(e.bus_key, e.to_bytes()) for e in opens]
    )

    async def counted() -> bool:
        async with app.journeys.engine.connect() as conn:
            n = await conn.scalar(sa.text("SELECT count(*) FROM jr_message_events"))
        return bool(n == len(opens))

    await app.wait_until(counted, timeout=60)
    assert await app.tick(hours=3) == 0, "the rest wait for the test to run its time"
    await app.tick(hours=1, seconds=1)

    async with app.journeys.engine.connect() as conn:
        sends: dict[str, int] = dict(
            (
                await conn.execute(
                    sa.text(
                        "SELECT step_id, count(*) FROM jr_steps WHERE outcome = 'sent'"
                        " GROUP BY step_id"
                    )
                )
            ).all()
        )
    test_a = sum(r.step_id == "mail_a" for r in tested)
    test_b = sum(r.step_id == "mail_b" for r in tested)
    assert sends == {"mail_a": test_a, "mail_b": test_b + held}

    report = (await app.client.get(f"/v1/journeys/{journey_id}/results", headers=app.admin)).json()
    (decision,) = report["ab_tests"]
    assert decision["step_id"] == "split"
    assert decision["winner"] == "emoji"
    assert decision["metric"] == "opened"
    figures = {b["branch"]: b for b in decision["branches"]}
    a_opens = sum(
        1 for e in opens for r in tested if r.send_id == e.payload["properties"]["message_id"]
        and r.step_id == "mail_a"
    )  # fmt: skip
    assert (figures["plain"]["runs"], figures["plain"]["opened"]) == (test_a, a_opens)
    assert (figures["emoji"]["runs"], figures["emoji"]["opened"]) == (test_b, len(opens) - a_opens)
    assert figures["plain"]["vs_winner"]["significant"] is True
    assert decision["significant"] is True
    assert report["runs"]["completed"] == CUSTOMERS
