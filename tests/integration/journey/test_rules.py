"""Delivery rules, holdout, consent, lifecycle and the other step kinds, on real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kizuna import topics
from kizuna.envelope import Envelope
from tests.helpers import read_topic
from tests.integration.journey.conftest import JourneyApp


def send_now(**extra: Any) -> dict[str, Any]:
    return {
        "name": "Promo",
        "trigger": {"type": "event", "event": "Promo Requested"},
        "start": "mail",
        "steps": {"mail": {"type": "send", "channel": "email", "template": "promo", **extra}},
    }


async def put_delivery(app: JourneyApp, **rules: Any) -> None:
    response = await app.client.put("/v1/delivery-settings", json=rules, headers=app.admin)
    assert response.status_code == 200, response.text


async def test_quiet_hours_postpone_marketing_not_transactional(pg_journey_app: JourneyApp) -> None:
    app = pg_journey_app
    await put_delivery(app, quiet_hours={"start": "21:00", "end": "09:00"})
    await app.create(send_now(), activate=True)
    await app.create({**send_now(category="transactional"), "name": "Receipt"})
    app.clock.now = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # 22:00 in Tokyo
    await app.identify("q1", email="q1@example.com", timezone="Asia/Tokyo")
    await app.track("q1", "Promo Requested")
    steps = await app.steps("q1")
    assert sorted(s["outcome"] for s in steps) == ["postponed", "sent"]
    postponed = next(s for s in steps if s["outcome"] == "postponed")
    assert postponed["detail"]["reason"] == "quiet_hours"
    await app.tick(hours=10, minutes=59)  # 08:59 in Tokyo
    assert len(await app.sent("q1")) == 1
    await app.tick(minutes=7)  # 09:06: past the window and its spread
    assert len(await app.sent("q1")) == 2
    requests = await app.send_requests(at_least=2)
    assert len({r.id for r in requests}) == 2


async def test_frequency_cap_skips_with_a_reason(pg_journey_app: JourneyApp) -> None:
    app = pg_journey_app
    await put_delivery(app, frequency_caps=[{"max": 1, "per": "P1D"}, {"max": 2, "per": "P7D"}])
    await app.create(send_now())
    await app.identify("f1", email="f1@example.com")
    for _ in range(2):
        await app.track("f1", "Promo Requested")
    await app.tick(days=1, minutes=1)
    await app.track("f1", "Promo Requested")
    await app.tick(days=1, minutes=1)
    await app.track("f1", "Promo Requested")  # a third within the week
    steps = await app.steps("f1")
    by_day: dict[int, list[tuple[str, Any]]] = {}
    for step in steps:
        day = (step["at"] - steps[0]["at"]).days
        by_day.setdefault(day, []).append((step["outcome"], step["detail"].get("reason")))
    assert {day: sorted(outcomes, key=str) for day, outcomes in by_day.items()} == {
        0: [("sent", None), ("skipped", "frequency_cap")],  # one a day
        1: [("sent", None)],
        2: [("skipped", "frequency_cap")],  # two a week
    }


async def test_holdout_gets_nothing_but_is_measured(pg_journey_app: JourneyApp) -> None:
    app = pg_journey_app
    journey = {**send_now(), "holdout_percent": 50, "goal": {"event": "Order Completed"}}
    await app.create(journey)
    customers = [f"h{i}" for i in range(40)]
    for customer in customers:
        await app.identify(customer, email=f"{customer}@example.com")
        await app.track(customer, "Promo Requested")
    held: list[str] = []
    sent: list[str] = []
    for customer in customers:
        [run] = await app.runs(customer)
        (held if run["holdout"] else sent).append(customer)
        outcomes = [s["outcome"] for s in await app.steps(customer)]
        assert outcomes == (["skipped"] if run["holdout"] else ["sent"])
    assert 8 <= len(held) <= 32
    await app.track(held[0], "Order Completed", order_id="x", total=5)
    [run] = await app.runs(held[0])
    assert run["converted_at"] is not None


async def test_consent_withdrawn_mid_journey_stops_sends(pg_journey_app: JourneyApp) -> None:
    app = pg_journey_app
    await app.from_template("welcome")
    await app.identify("u1", email="u1@example.com")
    await app.track("u1", "Newsletter Subscribed")
    await app.track("u1", "Unsubscribed", channel="email")
    await app.tick(days=2, minutes=1)
    await app.track("u1", "Consent Updated", channel="email", status="granted")
    await app.tick(days=2, minutes=1)
    outcomes = [
        (s["step_id"], s["outcome"], s["detail"].get("reason")) for s in await app.steps("u1")
    ]
    sends = [o for o in outcomes if o[0].startswith("welcome")]
    assert sends == [
        ("welcome_1", "sent", None),
        ("welcome_2", "skipped", "consent"),
        ("welcome_3", "sent", None),
    ]


async def test_invalid_journeys_are_refused_naming_the_step(pg_journey_app: JourneyApp) -> None:
    app = pg_journey_app
    bad: dict[str, Any] = {
        "name": "Broken",
        "trigger": {"type": "event", "event": "X"},
        "start": "a",
        "steps": {
            "a": {"type": "send", "channel": "email", "template": "t", "next": "nowhere"},
            "b": {"type": "wait", "duration": "P1M", "next": "a"},
        },
    }
    response = await app.client.post("/v1/journeys", json=bad, headers=app.admin)
    assert response.status_code == 422
    fields = {f["field"]: f["problem"] for f in response.json()["error"]["fields"]}
    assert "steps.b.duration" in fields
    assert "months" in fields["steps.b.duration"]
    bad["steps"]["b"]["duration"] = "P30D"
    response = await app.client.post("/v1/journeys", json=bad, headers=app.admin)
    fields = {f["field"]: f["problem"] for f in response.json()["error"]["fields"]}
    assert fields == {"steps.a.next": "no step 'nowhere'"}
    bad["steps"]["a"]["next"] = "c"
    bad["steps"]["c"] = {"type": "condition", "if": {"trait": "vip"}, "then": "a", "else": "a"}
    response = await app.client.post("/v1/journeys", json=bad, headers=app.admin)
    fields = {f["field"]: f["problem"] for f in response.json()["error"]["fields"]}
    assert "steps.b" in fields
    assert "never reached" in fields["steps.b"]
    assert any("with no wait" in problem for problem in fields.values())
    response = await app.client.post(
        "/v1/journeys", json={"name": "x", "trigger": {"type": "nope"}}, headers=app.admin
    )
    assert response.status_code == 422
    assert {f["field"] for f in response.json()["error"]["fields"]} >= {"trigger", "start"}


async def test_versions_pause_and_archive(pg_journey_app: JourneyApp) -> None:
    app = pg_journey_app
    journey = {
        **send_now(),
        "start": "wait",
        "steps": {
            "wait": {"type": "wait", "duration": "PT1H", "next": "mail"},
            "mail": {"type": "send", "channel": "email", "template": "v1"},
        },
    }
    journey_id = await app.create(journey)
    await app.identify("v1", email="v1@example.com")
    await app.identify("v2", email="v2@example.com")
    await app.track("v1", "Promo Requested")
    journey["steps"]["mail"]["template"] = "v2"
    response = await app.client.put(f"/v1/journeys/{journey_id}", json=journey, headers=app.admin)
    assert response.json()["version"] == 2
    await app.track("v2", "Promo Requested")
    await app.tick(minutes=61)
    requests = {r.customer_key: r for r in await app.send_requests(at_least=2)}
    assert requests["v1"].payload["template"] == "v1"  # finishes on the version it started on
    assert requests["v2"].payload["template"] == "v2"

    await app.track("v1", "Promo Requested")
    paused = await app.client.post(f"/v1/journeys/{journey_id}/pause", headers=app.admin)
    assert paused.json()["status"] == "paused"
    await app.tick(minutes=61)
    assert await app.sent("v1") == ["mail"]  # held while paused
    await app.track("v2", "Promo Requested")  # no entries while paused
    assert len(await app.runs("v2")) == 1
    await app.activate(journey_id)
    await app.tick(minutes=1)
    assert await app.sent("v1") == ["mail", "mail"]
    await app.client.post(f"/v1/journeys/{journey_id}/archive", headers=app.admin)
    edit = await app.client.put(f"/v1/journeys/{journey_id}", json=journey, headers=app.admin)
    assert edit.status_code == 409


async def test_merge_moves_the_run_and_erasure_cancels_it(pg_journey_app: JourneyApp) -> None:
    app = pg_journey_app
    await app.from_template("cart-abandonment", holdout_percent=0)
    await app.identify("anon", email="a@example.com")
    await app.track("anon", "Checkout Started")
    merged = Envelope.new(
        "customer.merged",
        app.workspace_id,
        "known",
        {"absorbed_id": "anon", "survivor_id": "known"},
        event_id="merged:anon",
    )
    await app.bus.publish(topics.CUSTOMER_LIFECYCLE, merged.bus_key, merged.to_bytes())
    await app.wait_until(lambda: _has_runs(app, "known"))
    await app.tick(minutes=61)
    assert await app.sent("known") == ["reminder"]
    erased = Envelope.new(
        "customer.erased",
        app.workspace_id,
        "known",
        {"customer_id": "known", "absorbed_ids": ["anon"]},
        event_id="erased:known",
    )
    await app.bus.publish(topics.CUSTOMER_LIFECYCLE, erased.bus_key, erased.to_bytes())
    await app.wait_until(lambda: _no_runs(app, "known"))
    assert await app.tick(days=2) == 0


async def _has_runs(app: JourneyApp, customer: str) -> bool:
    return bool(await app.runs(customer))


async def _no_runs(app: JourneyApp, customer: str) -> bool:
    return not await app.runs(customer)


async def test_branches_splits_traits_webhooks_and_api_enrolment(
    pg_journey_app: JourneyApp,
) -> None:
    app = pg_journey_app
    journey_id = await app.create(
        {
            "name": "Branchy",
            "trigger": {"type": "api"},
            "start": "gold",
            "steps": {
                "gold": {
                    "type": "condition",
                    "if": {"trait": "plan", "op": "equals", "value": "gold"},
                    "then": "tag",
                    "else": "ab",
                },
                "tag": {"type": "update_trait", "traits": {"vip": True}, "next": "hook"},
                "hook": {
                    "type": "webhook",
                    "url": "https://crm.example.com/hook",
                    "body": {"x": 1},
                },
                "ab": {
                    "type": "split",
                    "branches": [
                        {"weight": 1, "next": "a", "name": "A"},
                        {"weight": 1, "name": "B"},
                    ],
                },
                "a": {"type": "send", "channel": "email", "template": "a"},
            },
        }
    )
    await app.identify("g1", email="g1@example.com", plan="gold")
    await app.identify("s1", email="s1@example.com", plan="silver")
    body = {"customer_ids": ["g1", "s1"], "request_id": "req-1"}
    response = await app.client.post(
        f"/v1/journeys/{journey_id}/enrolments", json=body, headers=app.admin
    )
    assert response.json()["enrolled"] == 2
    again = await app.client.post(
        f"/v1/journeys/{journey_id}/enrolments", json=body, headers=app.admin
    )
    assert again.json()["enrolled"] == 0
    gold = [(s["step_id"], s["outcome"]) for s in await app.steps("g1")]
    assert gold == [("gold", "branched"), ("tag", "updated"), ("hook", "sent")]
    silver = [(s["step_id"], s["outcome"]) for s in await app.steps("s1")]
    assert silver[:2] == [("gold", "branched"), ("ab", "branched")]
    await app.journeys.publish_outbox()
    [identify] = await read_topic(app.bus, topics.RAW_EVENTS, 1, settle=0.3)
    trait_event = Envelope.from_bytes(identify.value)
    assert trait_event.payload["customerId"] == "g1"
    assert trait_event.payload["traits"] == {"vip": True}
    requests = await app.send_requests(at_least=1)
    hook = next(r for r in requests if r.payload["channel"] == "webhook")
    assert hook.payload["url"] == "https://crm.example.com/hook"
    assert hook.payload["data"]["x"] == 1


async def test_broadcast_to_a_segment_at_local_time(pg_journey_app: JourneyApp) -> None:
    app = pg_journey_app
    await app.identify("t1", email="t1@example.com", timezone="Asia/Tokyo")
    await app.identify("t2", email="t2@example.com", timezone="Europe/Paris")
    await app.identify("t3", email="t3@example.com", timezone="Europe/Paris")
    await app.identify("t4", email="t4@example.com", timezone="Pacific/Auckland")
    await app.send(
        app.segment_change("t1", "champions"),
        app.segment_change("t2", "champions"),
        app.segment_change("t4", "champions"),
    )
    await app.create(
        {
            "name": "Newsletter",
            "trigger": {
                "type": "broadcast",
                "segment": "champions",
                "at": "2026-03-03T10:00:00+09:00",
                "local_time": True,
                "spread": "PT1M",
            },
            "start": "mail",
            "steps": {"mail": {"type": "send", "channel": "email", "template": "news"}},
        }
    )
    app.clock.now = datetime(2026, 3, 2, 21, 2, tzinfo=UTC)  # 10:02 in Auckland (UTC+13)
    await app.tick()
    assert await app.sent("t4") == ["mail"]
    assert await app.sent("t1") == []
    app.clock.now = datetime(2026, 3, 3, 1, 2, tzinfo=UTC)  # 10:02 in Tokyo
    await app.tick()
    assert await app.sent("t1") == ["mail"]
    assert await app.sent("t2") == []
    app.clock.now = datetime(2026, 3, 3, 9, 2, tzinfo=UTC)  # 10:02 in Paris
    await app.tick()
    assert await app.sent("t2") == ["mail"]
    assert await app.sent("t3") == []  # not in the segment


async def test_overflowing_numbers_and_bad_options_are_refused(pg_journey_app: JourneyApp) -> None:
    app = pg_journey_app
    huge_wait = {
        **send_now(),
        "start": "w",
        "steps": {"w": {"type": "wait", "duration": "P9999999999D"}},
    }
    response = await app.client.post("/v1/journeys", json=huge_wait, headers=app.admin)
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "steps.w.duration"
    huge_days = {
        **send_now(),
        "start": "c",
        "steps": {"c": {"type": "condition", "if": {"event": "X", "within_days": 10**7}}},
    }
    response = await app.client.post("/v1/journeys", json=huge_days, headers=app.admin)
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "steps.c.if.within_days"
    response = await app.client.post(
        "/v1/journeys/from-template/dormant-reactivation",
        json={"options": {"via": "inactivity", "days": "ninety"}},
        headers=app.admin,
    )
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "body.options"


async def test_adding_to_the_cart_also_enters_cart_abandonment(pg_journey_app: JourneyApp) -> None:
    app = pg_journey_app
    await app.from_template("cart-abandonment", holdout_percent=0)
    await app.identify("a1", email="a1@example.com")
    await app.track("a1", "Product Added", product_id="tea")
    await app.track("a1", "Checkout Started")  # the same live run
    await app.tick(minutes=61)
    assert await app.sent("a1") == ["reminder"]
    assert len(await app.runs("a1")) == 1


async def test_birthdays_set_while_paused_are_scheduled_on_resume(
    pg_journey_app: JourneyApp,
) -> None:
    app = pg_journey_app
    journey_id = await app.from_template("birthday")
    response = await app.client.post(f"/v1/journeys/{journey_id}/pause", headers=app.admin)
    assert response.status_code == 200
    await app.identify("p1", email="p1@example.com", birthday="1990-03-04", timezone="UTC")
    await app.activate(journey_id)
    app.clock.now = datetime(2026, 3, 4, 9, 6, tzinfo=UTC)
    await app.tick()
    assert await app.sent("p1") == ["coupon"]
