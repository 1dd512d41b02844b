"""Deciles, LTV, preferences and the engagement score."""

from __future__ import annotations

import pytest

from kizuna import topics
from tests.integration.segmenter.conftest import SegmenterApp
from tests.integration.segmenter.test_segments import event, members

pytestmark = pytest.mark.parametrize("segmenter_settings", ["postgres"], indirect=True)


async def test_deciles_and_ltv(segmenter_app: SegmenterApp) -> None:
    app = segmenter_app
    orders = [app.order(f"d{i:02d}", f"do{i}", 100 * (i + 1)) for i in range(20)]
    orders.append(app.order("d19", "do-extra", 1000))
    await app.publish(topics.RESOLVED_EVENTS, *orders)

    async def scored() -> bool:
        return await app.tier_of("d19") is not None and await app.tier_of("d00") is not None

    await app.wait_until(scored)
    deciles = (await app.client.get("/v1/analysis/deciles", headers=app.admin)).json()["deciles"]
    assert [d["customers"] for d in deciles] == [2] * 10
    assert deciles[0]["revenue"] == 3000 + 1900, "d19 (2000 + 1000) and d18 (1900)"
    assert deciles[-1]["revenue"] == 100 + 200
    assert deciles[-1]["cumulative_share"] == 1.0
    assert sum(d["share"] for d in deciles) == pytest.approx(1.0, abs=0.001)

    ltv = (await app.client.get("/v1/analysis/ltv", headers=app.admin)).json()
    assert ltv["overall"]["customers"] == 20
    assert ltv["overall"]["average_ltv"] == (sum(100 * (i + 1) for i in range(20)) + 1000) / 20
    assert [c["cohort"] for c in ltv["by_first_order_month"]] == ["2026-03"]
    assert {t["tier"] for t in ltv["by_tier"]} <= {"new", "potential_loyalist", "champions"}


async def test_preferences_from_views_and_purchases(segmenter_app: SegmenterApp) -> None:
    app = segmenter_app
    await app.publish(
        topics.RESOLVED_EVENTS,
        event(app, "p1", "track", event="Product Viewed",
              properties={"category": "coffee", "brand": "Ueshima"}),
        event(app, "p1", "track", event="Product Viewed", properties={"category": "coffee"}),
        event(app, "p1", "track", event="Order Completed", properties={
            "order_id": "po", "total": 10,
            "products": [{"category": "tea", "brand": "Ippodo"}]}),
    )  # fmt: skip

    async def logged() -> bool:
        return await app.tier_of("p1") == "new"

    await app.wait_until(logged)
    found = await app.client.get("/v1/analysis/customers/p1/preferences", headers=app.admin)
    assert found.json()["categories"] == [
        {"name": "tea", "score": 3},
        {"name": "coffee", "score": 2},
    ]
    assert found.json()["brands"] == [
        {"name": "Ippodo", "score": 3},
        {"name": "Ueshima", "score": 1},
    ]


async def test_engagement_score_decays_crosses_thresholds_and_segments(
    segmenter_app: SegmenterApp,
) -> None:
    app = segmenter_app
    settings = {"points": {"Asset Downloaded": 30, "Email Link Clicked": 10},
                "half_life_days": 10, "thresholds": [50]}  # fmt: skip
    saved = await app.client.put("/v1/engagement/settings", json=settings, headers=app.admin)
    assert saved.status_code == 200
    hot = {"id": "hot_leads", "name": "Hot leads", "conditions": {"score": "engagement", "min": 50}}
    assert (await app.client.post("/v1/segments", json=hot, headers=app.admin)).status_code == 201
    download = event(app, "l1", "track", event="Asset Downloaded", properties={})
    await app.publish(
        topics.RESOLVED_EVENTS,
        download,
        download,  # the same event twice scores once
        event(app, "l1", "track", event="Email Link Clicked", properties={}),
    )

    async def scored() -> bool:
        found = await app.client.get("/v1/engagement/customers/l1", headers=app.admin)
        return found.status_code == 200 and found.json()["score"] == 40

    await app.wait_until(scored)
    await app.publish(
        topics.RESOLVED_EVENTS, event(app, "l1", "track", event="Asset Downloaded", properties={})
    )

    async def hot_now() -> bool:
        return await members(app, "hot_leads") == ["l1"]

    await app.wait_until(hot_now)
    app.clock.advance(days=10)  # one half-life: 70 → 35
    found = await app.client.get("/v1/engagement/customers/l1", headers=app.admin)
    assert found.json()["score"] == 35
    await app.segmenter.sweep()
    assert await members(app, "hot_leads") == []
    changes = await app.changes(3)
    crossings = [e.payload for e in changes if e.type == "score.threshold_crossed"]
    assert crossings == [{"score": "engagement", "threshold": 50.0, "value": 70.0}]
    bad = await app.client.put(
        "/v1/engagement/settings", json={**settings, "half_life_days": 0}, headers=app.admin
    )
    assert bad.status_code == 422
