"""Journey results over a few thousand synthetic customers: a 50/50 split and a 20 % holdout,
conversion probabilities that differ by variant, delivery outcomes and opens. The report's
counts must match what the test itself decided, and its lift and interval an independent
computation here (Wilson bounds as roots of the score equation, Newcombe's hybrid method)."""

from __future__ import annotations

import csv
import io
import math
import random
from typing import Any

import pytest
import sqlalchemy as sa

from kizuna import topics
from kizuna.bus import OutgoingMessage
from kizuna.envelope import Envelope
from tests.integration.journey.conftest import JourneyApp

CUSTOMERS = 2000
CONVERSION = {"A": 0.10, "B": 0.25, "holdout": 0.08}
Z = 1.959963984540054


def wilson_bounds(successes: int, trials: int) -> tuple[float, float]:
    """The p where |p̂ - p| = z·sqrt(p(1-p)/n): the roots of a quadratic in p."""
    p_hat = successes / trials
    a = 1 + Z * Z / trials
    b = -(2 * p_hat + Z * Z / trials)
    c = p_hat * p_hat
    root = math.sqrt(b * b - 4 * a * c)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


def newcombe(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_bounds(x1, n1)
    l2, u2 = wilson_bounds(x2, n2)
    d = p1 - p2
    return d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


async def publish(app: JourneyApp, topic: str, events: list[Envelope]) -> None:
    for start in range(0, len(events), 500):
        chunk = events[start : start + 500]
        await app.bus.publish_batch(
            topic, [OutgoingMessage(e.bus_key, e.to_bytes()) for e in chunk]
        )


async def scalar(app: JourneyApp, sql: str) -> Any:
    async with app.journeys.engine.connect() as conn:
        return await conn.scalar(sa.text(sql))


async def test_results_count_every_run_and_message_and_measure_lift_against_holdout(
    journey_app: JourneyApp,
) -> None:
    app = journey_app
    journey_id = await app.create(
        {
            "name": "Welcome test",
            "trigger": {"type": "event", "event": "Signed Up"},
            "goal": {"event": "Order Completed", "within": "P7D"},
            "holdout_percent": 20,
            "start": "split",
            "steps": {
                "split": {
                    "type": "split",
                    "branches": [
                        {"weight": 50, "next": "mail_a", "name": "A"},
                        {"weight": 50, "next": "mail_b", "name": "B"},
                    ],
                },
                "mail_a": {"type": "send", "channel": "email", "template": "welcome-a"},
                "mail_b": {"type": "send", "channel": "email", "template": "welcome-b"},
            },
        }
    )
    customers = [f"c{i:04d}" for i in range(CUSTOMERS)]
    await publish(
        app,
        topics.RESOLVED_EVENTS,
        [app.event(c, "identify", traits={"email": f"{c}@example.com"}) for c in customers],
    )
    await publish(
        app, topics.RESOLVED_EVENTS, [app.event(c, "track", "Signed Up") for c in customers]
    )

    async def all_ended() -> bool:
        done = await scalar(app, "SELECT count(*) FROM jr_runs WHERE status = 'completed'")
        return bool(done == CUSTOMERS)

    await app.wait_until(all_ended, timeout=120)

    async with app.journeys.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.text(
                    "SELECT r.customer_id, r.holdout, b.detail->>'branch' AS variant,"
                    " s.outcome, s.detail->>'send_id' AS send_id FROM jr_runs r"
                    " JOIN jr_steps b ON b.run_id = r.run_id AND b.outcome = 'branched'"
                    " JOIN jr_steps s ON s.run_id = r.run_id AND s.step_type = 'send'"
                )
            )
        ).all()
    assert len(rows) == CUSTOMERS
    seeded = random.Random(7)
    decided: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r.customer_id):
        group = "holdout" if row.holdout else row.variant
        decided[row.customer_id] = {
            "arm": group,
            "variant": row.variant,
            "converts": seeded.random() < CONVERSION[group],
            "total": seeded.choice([1200, 3400, 5600]),
            "send_id": row.send_id,
            "sent": row.outcome == "sent",
            "opens": not row.holdout and seeded.random() < 0.4,
        }
    assert all(d["sent"] == (d["arm"] != "holdout") for d in decided.values())

    orders = [
        app.event(c, "track", "Order Completed", {"order_id": f"o-{c}", "total": d["total"]})
        for c, d in decided.items()
        if d["converts"]
    ]
    await publish(app, topics.RESOLVED_EVENTS, orders)
    sent = [d for d in decided.values() if d["sent"]]
    delivered = [
        Envelope.new("delivery.delivered", app.workspace_id, "x", {"send_id": d["send_id"]})
        for d in sent
    ]
    opened = [
        app.event(c, "track", "Email Opened", {"message_id": d["send_id"]})
        for c, d in decided.items()
        if d["opens"]
    ]
    await publish(app, topics.DELIVERY_OUTCOMES, delivered)
    await publish(app, topics.RESOLVED_EVENTS, opened)

    converting = sum(d["converts"] for d in decided.values())

    async def settled() -> bool:
        conversions = await scalar(
            app, "SELECT count(*) FROM jr_runs WHERE converted_at IS NOT NULL"
        )
        engagement = await scalar(app, "SELECT count(*) FROM jr_message_events")
        return bool(conversions == converting and engagement == len(sent) + len(opened))

    await app.wait_until(settled, timeout=120)

    response = await app.client.get(f"/v1/journeys/{journey_id}/results", headers=app.admin)
    assert response.status_code == 200, response.text
    report = response.json()

    def arm(name: str) -> tuple[int, int]:
        members = [d for d in decided.values() if d["arm"] == name]
        return sum(d["converts"] for d in members), len(members)

    (a_conv, a_n), (b_conv, b_n), (h_conv, h_n) = arm("A"), arm("B"), arm("holdout")
    assert report["runs"]["entered"] == CUSTOMERS
    assert report["runs"]["completed"] == CUSTOMERS
    assert report["runs"]["converted"] == converting
    assert report["runs"]["revenue"] == pytest.approx(
        sum(d["total"] for d in decided.values() if d["converts"])
    )
    assert 0.17 < h_n / CUSTOMERS < 0.23, "the holdout is about 20 %"

    holdout = report["holdout"]
    assert holdout["treatment"]["runs"] == a_n + b_n
    assert holdout["treatment"]["converted"] == a_conv + b_conv
    assert holdout["holdout"] == {
        "runs": h_n,
        "converted": h_conv,
        "conversion_rate": pytest.approx(h_conv / h_n),
        "interval": pytest.approx(list(wilson_bounds(h_conv, h_n))),
    }
    t_conv, t_n = a_conv + b_conv, a_n + b_n
    lift = holdout["lift"]
    assert lift["absolute"] == pytest.approx(t_conv / t_n - h_conv / h_n)
    assert lift["relative"] == pytest.approx((t_conv / t_n - h_conv / h_n) / (h_conv / h_n))
    assert lift["interval"] == pytest.approx(list(newcombe(t_conv, t_n, h_conv, h_n)))
    assert lift["significant"] is True  # 17.5 % against 8 % over ~1,600 and ~400 runs

    variants = {v["variant"]: v for v in report["variants"]}
    assert (variants["A"]["runs"], variants["A"]["converted"]) == (a_n, a_conv)
    assert (variants["B"]["runs"], variants["B"]["converted"]) == (b_n, b_conv)
    assert variants["B"]["vs_first"]["interval"] == pytest.approx(
        list(newcombe(b_conv, b_n, a_conv, a_n))
    )
    assert variants["B"]["vs_first"]["significant"] is True

    steps = {(s["step_id"], s["variant"]): s for s in report["steps"]}
    for name, step in (("A", "mail_a"), ("B", "mail_b")):
        members = [d for d in decided.values() if d["variant"] == name and d["arm"] != "holdout"]
        row = steps[(step, name)]
        assert row["sent"] == len(members)
        assert row["delivered"] == len(members)
        assert row["opened"] == sum(d["opens"] for d in members)
        assert row["open_rate"] == pytest.approx(row["opened"] / len(members))
        held = [d for d in decided.values() if d["variant"] == name and d["arm"] == "holdout"]
        assert row["skipped"] == {"holdout": len(held)}

    daily = await app.client.get(f"/v1/journeys/{journey_id}/results/daily", headers=app.admin)
    days = daily.json()["days"]
    assert sum(d["entered"] for d in days) == CUSTOMERS
    assert sum(d["converted"] for d in days) == converting
    assert sum(d["opened"] for d in days) == len(opened)

    exported = await app.client.get(
        f"/v1/journeys/{journey_id}/results", params={"format": "csv"}, headers=app.admin
    )
    assert exported.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(exported.text)))
    by_step = {(r["step_id"], r["variant"]): r for r in table}
    assert int(by_step[("mail_a", "A")]["sent"]) == steps[("mail_a", "A")]["sent"]
    empty = await app.client.get(
        f"/v1/journeys/{journey_id}/results",
        params={"since": "2030-01-01T00:00:00Z", "until": "2031-01-01T00:00:00Z"},
        headers=app.admin,
    )
    assert empty.json()["runs"]["entered"] == 0
    missing = await app.client.get("/v1/journeys/nope/results", headers=app.admin)
    assert missing.status_code == 404
