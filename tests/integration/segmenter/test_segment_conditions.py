"""Rule segment conditions end to end: segments defined through the API, events through the real
consumer, membership read back through the API, exact members every time."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from kizuna import topics
from kizuna.envelope import Envelope
from kizuna_segmenter import handlers
from tests.integration.segmenter.conftest import SegmenterApp

pytestmark = pytest.mark.parametrize("segmenter_settings", ["postgres"], indirect=True)

MARKER = "Test Marker"  # sent after each customer's events; no condition below looks at it


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


def identify(app: SegmenterApp, customer: str, **traits: Any) -> Envelope:
    return event(app, customer, "identify", traits=traits)


def track(app: SegmenterApp, customer: str, name: str, **properties: Any) -> Envelope:
    return event(app, customer, "track", event=name, properties=properties)


async def send(app: SegmenterApp, *events: Envelope) -> None:
    """Publishes the events, then a marker per customer, and waits until every marker has been
    consumed. A customer's events share a partition, so by then all of theirs have been, and
    the memberships they changed were committed with them."""
    customers = sorted({e.customer_key for e in events})
    markers = [track(app, c, MARKER) for c in customers]
    await app.publish(topics.RESOLVED_EVENTS, *events, *markers)

    async def consumed() -> bool:
        async with app.segmenter.engine.connect() as conn:
            seen = await conn.scalar(
                sa.text(
                    "SELECT count(*) FROM seg_events WHERE workspace_id = :ws"
                    " AND event_id = ANY(CAST(:ids AS text[]))"
                ),
                {"ws": app.workspace_id, "ids": [m.id for m in markers]},
            )
        return bool(seen == len(markers))

    await app.wait_until(consumed)


async def create(app: SegmenterApp, segment_id: str, conditions: dict[str, Any]) -> None:
    created = await app.client.post(
        "/v1/segments",
        json={"id": segment_id, "name": segment_id, "conditions": conditions},
        headers=app.admin,
    )
    assert created.status_code == 201, created.text


async def members(app: SegmenterApp, segment_id: str) -> list[str]:
    response = await app.client.get(f"/v1/segments/{segment_id}/members", headers=app.admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    return [m["customer_id"] for m in body["members"]]


async def preview(app: SegmenterApp, conditions: dict[str, Any]) -> list[str]:
    response = await app.client.post(
        "/v1/segments/preview", json={"conditions": conditions}, headers=app.admin
    )
    assert response.status_code == 200, response.text
    sample: list[str] = response.json()["sample"]
    return sample


async def test_any_matches_either_condition_and_follows_both(segmenter_app: SegmenterApp) -> None:
    app = segmenter_app
    await create(
        app,
        "gold_or_subscribed",
        {"any": [{"trait": "plan", "op": "equals", "value": "gold"},
                 {"event": "Newsletter Subscribed"}]},
    )  # fmt: skip
    await send(
        app,
        identify(app, "a", plan="gold"),
        track(app, "b", "Newsletter Subscribed"),
        identify(app, "c", plan="silver"),
        identify(app, "d", plan="gold"),
        track(app, "d", "Newsletter Subscribed"),
        track(app, "e", "Newsletter Unsubscribed"),
    )
    assert await members(app, "gold_or_subscribed") == ["a", "b", "d"]

    app.clock.advance(minutes=1)
    await send(
        app,
        track(app, "c", "Newsletter Subscribed"),  # c now meets the second condition
        identify(app, "a", plan="silver"),  # a no longer meets the only one it met
        identify(app, "d", plan="silver"),  # d still meets the other one
    )
    assert await members(app, "gold_or_subscribed") == ["b", "c", "d"]
    changes = await app.changes(5)
    rule = [(e.type, e.customer_key) for e in changes if e.payload.get("kind") == "rule"]
    assert sorted(rule) == [
        ("segment.entered", "a"),
        ("segment.entered", "b"),
        ("segment.entered", "c"),
        ("segment.entered", "d"),
        ("segment.exited", "a"),
    ]


async def test_trait_ranges_of_numbers_and_of_dates(segmenter_app: SegmenterApp) -> None:
    app = segmenter_app
    await create(app, "twenties", {"trait": "age", "op": "range", "min": 20, "max": 29})
    await create(
        app,
        "joined_h1_2025",
        {"trait": "signed_up", "op": "range", "min": "2025-01-01", "max": "2025-06-30"},
    )
    await create(app, "adults", {"trait": "age", "op": "range", "min": 18})
    await send(
        app,
        identify(app, "a19", age=19, signed_up="2024-12-31"),
        identify(app, "a20", age=20, signed_up="2025-01-01"),
        identify(app, "a25", age=25.5, signed_up="2025-03-15"),
        identify(app, "a29", age=29, signed_up="2025-06-30"),
        identify(app, "a30", age=30, signed_up="2025-07-01"),
        identify(app, "s25", age="25"),  # text, not a number: no numeric range matches it
        identify(app, "none"),
    )
    assert await members(app, "twenties") == ["a20", "a25", "a29"]  # both ends inclusive
    assert await members(app, "joined_h1_2025") == ["a20", "a25", "a29"]
    assert await members(app, "adults") == ["a19", "a20", "a25", "a29", "a30"]

    app.clock.advance(minutes=1)
    await send(app, identify(app, "a25", age=31), identify(app, "a30", age=28))
    assert await members(app, "twenties") == ["a20", "a29", "a30"]


async def test_exists_and_not_exists(segmenter_app: SegmenterApp) -> None:
    app = segmenter_app
    await create(app, "with_phone", {"trait": "phone", "op": "exists"})
    await create(app, "without_phone", {"trait": "phone", "op": "not_exists"})
    await send(
        app,
        identify(app, "p1", phone="090-1234-5678"),
        identify(app, "p2", phone=None),  # a trait set to null does not exist
        identify(app, "p3", plan="gold"),  # other traits only
        track(app, "p4", "Page Viewed"),  # known from events only
        identify(app, "p5", phone=""),  # empty, but there
    )
    assert await members(app, "with_phone") == ["p1", "p5"]
    assert await members(app, "without_phone") == ["p2", "p3", "p4"]

    app.clock.advance(minutes=1)
    await send(app, identify(app, "p3", phone="03-0000-0000"), identify(app, "p1", phone=None))
    assert await members(app, "with_phone") == ["p3", "p5"]
    assert await members(app, "without_phone") == ["p1", "p2", "p4"]


async def test_an_event_at_least_n_times_in_the_last_d_days(segmenter_app: SegmenterApp) -> None:
    app = segmenter_app
    tea_views = {"event": "Product Viewed", "min_count": 3, "within_days": 7,
                 "where": [{"property": "category", "op": "equals", "value": "tea"}]}  # fmt: skip
    await create(app, "tea_browsers", tea_views)
    await create(
        app, "twice_or_thrice", {"event": "Product Viewed", "min_count": 2, "max_count": 3}
    )
    tea, coffee = {"category": "tea"}, {"category": "coffee"}

    await send(app, track(app, "v3", "Product Viewed", **tea))  # day 0
    app.clock.advance(days=5)
    repeated = track(app, "v2", "Product Viewed", **tea)
    await send(
        app,
        *(track(app, "v1", "Product Viewed", **tea) for _ in range(3)),
        repeated,
        repeated,  # the same event twice counts once
        track(app, "v2", "Product Viewed", **coffee),  # not tea
        track(app, "v2", "Product Liked", **tea),  # not a view
        *(track(app, "v3", "Product Viewed", **tea) for _ in range(2)),
        *(track(app, "v4", "Product Viewed", **tea) for _ in range(4)),
    )
    assert await members(app, "tea_browsers") == ["v1", "v3", "v4"]
    assert await members(app, "twice_or_thrice") == ["v1", "v2", "v3"]  # v4 viewed 4 times

    app.clock.advance(days=3)  # v3's first view is 8 days old
    await app.segmenter.sweep()
    assert await members(app, "tea_browsers") == ["v1", "v4"]
    await send(app, track(app, "v2", "Product Viewed", **tea))  # v2's second tea view
    assert await members(app, "tea_browsers") == ["v1", "v4"]
    await send(app, track(app, "v2", "Product Viewed", **tea))  # and third
    assert await members(app, "tea_browsers") == ["v1", "v2", "v4"]
    assert await members(app, "twice_or_thrice") == ["v1", "v3"]  # v2 now viewed 5 times


async def test_rfm_score_ranges_follow_purchases_and_time(segmenter_app: SegmenterApp) -> None:
    """Four buyers: the documented fixed thresholds apply (recency ≤30/90/180 days → 5/4/3,
    frequency 1/2/3/4 orders → 1/2/3/4)."""
    app = segmenter_app
    await create(app, "recent", {"rfm": "recency", "op": "range", "min": 4})
    await create(app, "lapsing", {"rfm": "recency", "max": 3})
    await create(app, "f2_to_f3", {"rfm": "frequency", "min": 2, "max": 3})
    await create(app, "sleepy", {"rfm": "tier", "op": "in", "value": ["about_to_sleep"]})

    await send(app, app.order("a", "a1", 1000), *(app.order("b", f"b{i}", 1000) for i in range(2)))
    assert await members(app, "recent") == ["a", "b"]
    assert await members(app, "f2_to_f3") == ["b"]

    app.clock.advance(days=50)
    await send(
        app,
        *(app.order("c", f"c{i}", 1000) for i in range(3)),
        *(app.order("d", f"d{i}", 1000) for i in range(4)),
    )
    assert await members(app, "f2_to_f3") == ["b", "c"]
    assert await members(app, "lapsing") == []

    app.clock.advance(days=50)  # a and b: 100 days since their last order (R3); c and d: 50 (R4)
    await app.segmenter.sweep()
    assert [await app.tier_of(c) for c in "abcd"] == [
        "about_to_sleep", "about_to_sleep", "potential_loyalist", "loyal"
    ]  # fmt: skip
    assert await members(app, "recent") == ["c", "d"]
    assert await members(app, "lapsing") == ["a", "b"]
    assert await members(app, "sleepy") == ["a", "b"]
    assert await members(app, "f2_to_f3") == ["b", "c"]

    await send(app, app.order("a", "a2", 1000))  # a buys again: R5, F2
    assert await members(app, "recent") == ["a", "c", "d"]
    assert await members(app, "lapsing") == ["b"]
    assert await members(app, "f2_to_f3") == ["a", "b", "c"]

    app.clock.advance(days=100)  # the customers' review times have come: a sweep rescores them
    async with app.segmenter.engine.begin() as conn:
        reviewed, _ = await handlers.sweep_due(conn, app.clock(), 1000)
    assert reviewed == 4
    assert [await app.tier_of(c) for c in "abcd"] == [
        "about_to_sleep", "hibernating", "need_attention", "loyal"
    ]  # fmt: skip
    assert await members(app, "recent") == []
    assert await members(app, "lapsing") == ["a", "b", "c", "d"]
    assert await members(app, "sleepy") == ["a"]


async def test_order_facts_count_revenue_and_the_last_order(segmenter_app: SegmenterApp) -> None:
    app = segmenter_app
    await create(app, "repeat", {"fact": "orders_count", "op": "range", "min": 2})
    await create(app, "big_spenders", {"fact": "revenue", "min": 5000})
    await create(app, "mid_spenders", {"fact": "revenue", "min": 1000, "max": 4999.99})
    await create(app, "bought_lately", {"fact": "last_order_at", "within_days": 30})
    await create(app, "lapsed", {"fact": "last_order_at", "before_days": 30})

    await send(
        app,
        app.order("x1", "x1-a", 3000),
        app.order("x1", "x1-b", 3000),
        app.order("x2", "x2-a", 5000),
        app.order("x3", "x3-a", 800),
        identify(app, "x4", plan="gold"),  # never ordered
    )
    assert await members(app, "repeat") == ["x1"]
    assert await members(app, "big_spenders") == ["x1", "x2"]
    assert await members(app, "mid_spenders") == []
    assert await members(app, "bought_lately") == ["x1", "x2", "x3"]

    await send(app, app.order("x1", "x1-b", 0, refund=True))  # refunded in full
    assert await members(app, "repeat") == []
    assert await members(app, "big_spenders") == ["x2"]
    assert await members(app, "mid_spenders") == ["x1"]

    app.clock.advance(days=20)
    await send(app, app.order("x3", "x3-b", 4500))
    assert await members(app, "repeat") == ["x3"]
    assert await members(app, "big_spenders") == ["x2", "x3"]

    app.clock.advance(days=15)  # x1 and x2 last ordered 35 days ago, x3 15 days ago
    await app.segmenter.sweep()
    assert await members(app, "bought_lately") == ["x3"]
    assert await members(app, "lapsed") == ["x1", "x2"]
    assert await members(app, "big_spenders") == ["x2", "x3"]


async def test_members_come_in_pages_each_exactly_once(segmenter_app: SegmenterApp) -> None:
    app = segmenter_app
    gold = [f"m-{i:02d}" for i in range(1, 8)]
    await send(
        app,
        *(identify(app, c, plan="gold") for c in gold),
        identify(app, "m-00", plan="silver"),
        identify(app, "m-99", plan="silver"),
    )
    await create(app, "gold", {"trait": "plan", "value": "gold"})
    shown = await app.client.get("/v1/segments/gold", headers=app.admin)
    assert shown.json()["members"] == 7

    async def pages(limit: int) -> list[list[str]]:
        seen: list[list[str]] = []
        cursor = ""
        while True:
            response = await app.client.get(
                "/v1/segments/gold/members",
                params={"limit": limit, "cursor": cursor},
                headers=app.admin,
            )
            assert response.status_code == 200, response.text
            body = response.json()
            seen.append([m["customer_id"] for m in body["members"]])
            if body["next_cursor"] is None:
                return seen
            assert body["next_cursor"] == seen[-1][-1]
            cursor = body["next_cursor"]
            assert len(seen) <= 10, "the cursor must move on"

    assert await pages(3) == [gold[0:3], gold[3:6], gold[6:7]]
    assert await pages(1) == [[c] for c in gold]
    assert await pages(6) == [gold[0:6], gold[6:7]]
    assert await pages(7) == [gold], "a full last page has no next cursor"
    assert await pages(1000) == [gold]

    for limit in (0, 1001):
        refused = await app.client.get(
            "/v1/segments/gold/members", params={"limit": limit}, headers=app.admin
        )
        assert refused.status_code == 422, limit
    missing = await app.client.get("/v1/segments/nope/members", headers=app.admin)
    assert missing.status_code == 404

    app.clock.advance(minutes=1)
    await send(app, identify(app, "m-04", plan="silver"))  # an exit mid-listing
    first = await app.client.get(
        "/v1/segments/gold/members", params={"limit": 3}, headers=app.admin
    )
    rest = await app.client.get(
        "/v1/segments/gold/members",
        params={"limit": 3, "cursor": first.json()["next_cursor"]},
        headers=app.admin,
    )
    assert [m["customer_id"] for m in rest.json()["members"]] == ["m-05", "m-06", "m-07"]


async def test_every_leaf_kind_runs_in_postgres_and_bad_values_are_422(
    segmenter_app: SegmenterApp,
) -> None:
    app = segmenter_app
    await send(
        app,
        identify(app, "k1", plan="gold", birthday="1990-03-14", city="Kyoto-shi"),
        track(app, "k1", "Consent Updated", channel="line", status="granted"),
        app.order("k1", "k1-a", 2500, category="tea"),
    )
    runs: list[tuple[dict[str, Any], list[str]]] = [
        ({"trait": "plan", "op": "not_equals", "value": "silver"}, ["k1"]),
        ({"trait": "plan", "op": "in", "value": ["gold", "platinum"]}, ["k1"]),
        ({"trait": "city", "op": "contains", "value": "kyoto"}, ["k1"]),
        ({"trait": "birthday", "part": "day", "op": "range", "min": 10, "max": 20}, ["k1"]),
        ({"trait": "birthday", "part": "year", "op": "in", "value": [1990]}, ["k1"]),
        ({"event": "Order Completed", "where": [
            {"property": "total", "op": "range", "min": 2000},
            {"property": "category", "op": "in", "value": ["tea"]},
            {"property": "category", "op": "contains", "value": "TE"},
            {"property": "category", "op": "not_equals", "value": "coffee"}]}, ["k1"]),
        ({"rfm": "tier", "value": "new"}, ["k1"]),
        ({"rfm": "monetary", "op": "in", "value": [3]}, ["k1"]),
        ({"consent": "line", "status": "granted"}, ["k1"]),
        ({"consent": "email"}, []),
        ({"fact": "first_order_at", "within_days": 1}, ["k1"]),
        ({"score": "engagement", "min": 1}, ["k1"]),
        ({"not": {"any": [{"rfm": "recency", "max": 4}, {"fact": "revenue", "max": 100}]}},
         ["k1"]),
    ]  # fmt: skip
    for conditions, expected in runs:
        assert await preview(app, conditions) == expected, conditions

    refusals: list[tuple[dict[str, Any], str]] = [
        ({"fact": "revenue", "min": "lots"}, "conditions.min"),
        ({"rfm": "recency", "op": "in", "value": ["five"]}, "conditions.value"),
        ({"rfm": "tier", "value": 5}, "conditions.value"),
        ({"consent": ["email"]}, "conditions.consent"),
        ({"all": [{"trait": "birthday", "part": "month", "value": "april"}]},
         "conditions.all[0].value"),
        ({"trait": "birthday", "part": "month", "op": "contains", "value": "4"}, "conditions.op"),
    ]  # fmt: skip
    for conditions, place in refusals:
        refused = await app.client.post(
            "/v1/segments/preview", json={"conditions": conditions}, headers=app.admin
        )
        assert refused.status_code == 422, (conditions, refused.text)
        assert refused.json()["error"]["message"].startswith(f"{place}: "), refused.json()
