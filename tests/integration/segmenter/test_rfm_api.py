"""RFM settings, boundaries, the grid and the migration matrix through the API."""

from __future__ import annotations

import pytest

from kizuna import topics
from kizuna.envelope import Envelope
from tests.integration.segmenter.conftest import SegmenterApp

pytestmark = pytest.mark.parametrize("segmenter_settings", ["postgres"], indirect=True)

JAPANESE = [
    {"id": "vip", "name": "優良顧客", "recency": [4, 5], "frequency": [3, 5]},
    {"id": "at_risk", "name": "離反予備軍", "recency": [1, 3], "frequency": [3, 5]},
    {"id": "dormant", "name": "休眠顧客", "recency": [1, 2], "frequency": [1, 2]},
    {"id": "others", "name": "一般", "recency": [1, 5], "frequency": [1, 5]},
]


async def test_quintiles_from_the_buyers_and_custom_tiers(segmenter_app: SegmenterApp) -> None:
    app = segmenter_app
    events: list[Envelope] = []
    for i in range(10):  # customer i has i + 1 orders of 1000
        events += [app.order(f"b{i}", f"b{i}-{n}", 1000) for n in range(i + 1)]
    await app.publish(topics.RESOLVED_EVENTS, *events)

    async def all_scored() -> bool:
        return await app.tier_of("b9") is not None

    await app.wait_until(all_scored)
    recomputed = await app.client.post("/v1/rfm/recompute", headers=app.admin)
    assert recomputed.status_code == 200
    bounds = (await app.client.get("/v1/rfm/bounds", headers=app.admin)).json()
    assert bounds["buyers"] == 10
    assert bounds["fixed_thresholds"] is False
    assert bounds["frequency"] == pytest.approx([2.8, 4.6, 6.4, 8.2])
    top = (await app.client.get("/v1/rfm/customers/b9", headers=app.admin)).json()
    assert top["scores"] == {"recency": 5, "frequency": 5, "monetary": 5}
    assert top["tier"] == "champions"
    bottom = (await app.client.get("/v1/rfm/customers/b0", headers=app.admin)).json()
    assert bottom["scores"]["frequency"] == 1

    refused = await app.client.put(
        "/v1/rfm/settings", json={"tiers": JAPANESE[:3]}, headers=app.admin
    )
    assert refused.status_code == 422
    assert "no tier covers" in refused.json()["error"]["message"]
    bad = await app.client.put("/v1/rfm/settings", json={"window_days": 1}, headers=app.admin)
    assert bad.status_code == 422
    assert bad.json()["error"]["fields"][0]["field"].endswith("window_days")

    changed = await app.client.put(
        "/v1/rfm/settings", json={"window_days": 180, "tiers": JAPANESE}, headers=app.admin
    )
    assert changed.status_code == 200
    assert changed.json()["tier_changes"] == 10
    assert await app.tier_of("b9") == "vip"
    shown = (await app.client.get("/v1/rfm/customers/b9", headers=app.admin)).json()
    assert shown["tier_name"] == "優良顧客"

    grid = (await app.client.get("/v1/rfm/grid", headers=app.admin)).json()
    assert len(grid["cells"]) == 25
    assert sum(c["customers"] for c in grid["cells"]) == 10
    assert sum(t["customers"] for t in grid["tiers"]) == 10
    assert [t["name"] for t in grid["tiers"]] == ["優良顧客", "離反予備軍", "休眠顧客", "一般"]

    moves = (await app.client.get("/v1/rfm/migrations", headers=app.admin)).json()
    [month] = moves["months"]
    assert month["month"] == "2026-03"
    into_vip = [m for m in month["moves"] if m["to"] == "vip"]
    assert into_vip
    assert all(m["from"] is not None for m in into_vip)
    wrong = await app.client.get(
        "/v1/rfm/migrations", params={"from": "2026-13"}, headers=app.admin
    )
    assert wrong.status_code == 422
    assert (await app.client.get("/v1/rfm/grid")).status_code == 401


async def test_erasure_deletes_the_customers_rfm_state(segmenter_app: SegmenterApp) -> None:
    app = segmenter_app
    await app.publish(topics.RESOLVED_EVENTS, app.order("gone", "g-1", 10))

    async def scored() -> bool:
        return await app.tier_of("gone") == "new"

    await app.wait_until(scored)
    erased = app.order("gone", "x", 0).model_copy(
        update={
            "id": "erased:gone",
            "type": "customer.erased",
            "payload": {"customer_id": "gone", "absorbed_ids": []},
        }
    )
    await app.publish(topics.CUSTOMER_LIFECYCLE, erased)

    async def deleted() -> bool:
        found = await app.client.get("/v1/rfm/customers/gone", headers=app.admin)
        return found.status_code == 404

    await app.wait_until(deleted)
