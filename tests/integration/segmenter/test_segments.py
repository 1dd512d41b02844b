"""Rule segments: defined through the API, kept current by events and by time, every entry and
exit announced once."""

from __future__ import annotations

from typing import Any

import pytest

from kizuna import topics
from kizuna.envelope import Envelope
from tests.integration.segmenter.conftest import SegmenterApp

pytestmark = pytest.mark.parametrize("segmenter_settings", ["postgres"], indirect=True)

TEA_LOVERS = {
    "all": [
        {"trait": "plan", "op": "in", "value": ["gold", "platinum"]},
        {"event": "Order Completed", "within_days": 30,
         "where": [{"property": "category", "op": "equals", "value": "tea"}]},
        {"consent": "email", "status": "granted"},
        {"not": {"trait": "blocked", "op": "equals", "value": True}},
    ]
}  # fmt: skip


def event(app: SegmenterApp, customer: str, type_: str, **payload: Any) -> Envelope:
    app.sent += 1
    return Envelope(
        id=f"e-{customer}-{app.sent}",
        type=type_,
        workspace_id=app.workspace_id,
        customer_key=customer,
        occurred_at=app.clock.now,
        received_at=app.clock.now,
        payload={"type": type_, "customerId": customer, **payload},
    )


async def members(app: SegmenterApp, segment: str) -> list[str]:
    body = (await app.client.get(f"/v1/segments/{segment}/members", headers=app.admin)).json()
    return [m["customer_id"] for m in body["members"]]


async def test_a_rule_segment_follows_events_and_time(segmenter_app: SegmenterApp) -> None:
    app = segmenter_app
    await app.publish(
        topics.RESOLVED_EVENTS,
        event(app, "c1", "identify", traits={"plan": "gold", "birthday": "1990-03-14"}),
        event(app, "c2", "identify", traits={"plan": "gold"}),
        event(
            app,
            "c1",
            "track",
            event="Consent Updated",
            properties={"channel": "email", "status": "granted"},
        ),
        event(
            app,
            "c2",
            "track",
            event="Consent Updated",
            properties={"channel": "email", "status": "granted"},
        ),
        event(
            app,
            "c2",
            "track",
            event="Order Completed",
            properties={"order_id": "x", "total": 10, "category": "coffee"},
        ),
    )

    async def known() -> bool:
        return await app.tier_of("c2") == "new"

    await app.wait_until(known)
    preview = await app.client.post(
        "/v1/segments/preview", json={"conditions": TEA_LOVERS}, headers=app.admin
    )
    assert preview.json() == {"count": 0, "sample": []}
    created = await app.client.post(
        "/v1/segments",
        json={"id": "tea_lovers", "name": "Tea lovers", "conditions": TEA_LOVERS},
        headers=app.admin,
    )
    assert created.status_code == 201, created.text
    assert created.json()["time_based"] is True
    assert created.json()["members"] == 0

    await app.publish(
        topics.RESOLVED_EVENTS,
        event(app, "c1", "track", event="Order Completed",
              properties={"order_id": "t1", "total": 3000, "category": "tea"}),
    )  # fmt: skip

    async def joined() -> bool:
        return await members(app, "tea_lovers") == ["c1"]

    await app.wait_until(joined)
    app.clock.advance(days=31)  # the tea order leaves the 30-day window
    await app.segmenter.sweep()
    assert await members(app, "tea_lovers") == []

    changes = await app.changes(2)
    rule_changes = [(e.type, e.customer_key) for e in changes if e.payload.get("kind") == "rule"]
    assert rule_changes == [("segment.entered", "c1"), ("segment.exited", "c1")]


async def test_birthday_month_rfm_and_did_not_perform(segmenter_app: SegmenterApp) -> None:
    app = segmenter_app  # the clock says March
    await app.publish(
        topics.RESOLVED_EVENTS,
        event(app, "b1", "identify", traits={"birthday": "1988-03-02"}),
        event(app, "b2", "identify", traits={"birthday": "1991-07-20"}),
        event(app, "b2", "track", event="Email Opened", properties={}),
        event(app, "b1", "track", event="Order Completed",
              properties={"order_id": "bo", "total": 10}),
    )  # fmt: skip

    async def scored() -> bool:
        return await app.tier_of("b1") == "new"

    await app.wait_until(scored)
    for segment_id, conditions, expected in (
        ("birthday_month", {"trait": "birthday", "part": "month", "value": "current"}, ["b1"]),
        ("new_buyers", {"rfm": "tier", "op": "in", "value": ["new"]}, ["b1"]),
        ("never_opened", {"event": "Email Opened", "max_count": 0}, ["b1"]),
        ("july", {"trait": "birthday", "part": "month", "op": "equals", "value": 7}, ["b2"]),
    ):
        created = await app.client.post(
            "/v1/segments",
            json={"id": segment_id, "name": segment_id, "conditions": conditions},
            headers=app.admin,
        )
        assert created.status_code == 201, created.text
        assert await members(app, segment_id) == expected, segment_id
    csv_body = await app.client.get("/v1/segments/july/members.csv", headers=app.admin)
    assert csv_body.headers["content-type"].startswith("text/csv")
    assert csv_body.text.splitlines()[0] == "customer_id,since"
    assert csv_body.text.splitlines()[1].startswith("b2,")

    app.clock.advance(days=31)  # April: b1's birthday month is over
    await app.segmenter.sweep()
    assert await members(app, "birthday_month") == []

    deleted = await app.client.delete("/v1/segments/july", headers=app.admin)
    assert deleted.status_code == 204
    assert (await app.client.get("/v1/segments/july", headers=app.admin)).status_code == 404
    changes = await app.changes(6)
    july = [(e.type, e.payload.get("initial")) for e in changes
            if e.payload.get("segment_id") == "july"]  # fmt: skip
    assert july == [("segment.entered", True), ("segment.exited", None)]


async def test_bad_segments_are_refused_naming_the_place(segmenter_app: SegmenterApp) -> None:
    app = segmenter_app
    for conditions, place in (
        ({"all": []}, "conditions.all"),
        ({"all": [{"trait": "plan", "op": "like"}]}, "conditions.all[0].op"),
        ({"event": "Order Completed", "within_days": 0}, "conditions.within_days"),
        ({"rfm": "loyalty"}, "conditions.rfm"),
        ({"consent": "fax"}, "conditions.consent"),
        ({"fact": "last_order_at"}, "conditions"),
        ({"banana": 1}, "conditions"),
    ):
        refused = await app.client.post(
            "/v1/segments/preview", json={"conditions": conditions}, headers=app.admin
        )
        assert refused.status_code == 422, conditions
        assert refused.json()["error"]["message"].startswith(place), refused.json()
    bad_id = await app.client.post(
        "/v1/segments",
        json={"id": "Bad Id!", "name": "x", "conditions": {"rfm": "tier", "value": "new"}},
        headers=app.admin,
    )
    assert bad_id.status_code == 422
    ok = {"id": "dup", "name": "x", "conditions": {"rfm": "tier", "value": "new"}}
    assert (await app.client.post("/v1/segments", json=ok, headers=app.admin)).status_code == 201
    again = await app.client.post("/v1/segments", json=ok, headers=app.admin)
    assert again.status_code == 409
