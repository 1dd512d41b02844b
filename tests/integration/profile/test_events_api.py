"""`GET /v1/events`: the workspace's stored events over a time range, oldest first, by page."""

from __future__ import annotations

from datetime import timedelta

from tests.integration.profile.conftest import T0, ProfileApi
from tests.integration.profile.test_customers_api import seed_hanako


async def test_stored_events_page_by_time_filtered_by_name_and_type(
    profile_api: ProfileApi,
) -> None:
    customer_id = await seed_hanako(profile_api)
    admin = profile_api.admin
    window = {"since": T0.isoformat(), "until": (T0 + timedelta(days=1)).isoformat()}
    seen, cursor = [], None
    while True:
        page = await profile_api.client.get(
            "/v1/events",
            params={**window, "limit": 2, **({"cursor": cursor} if cursor else {})},
            headers=admin,
        )
        assert page.status_code == 200, page.text
        body = page.json()
        seen += body["events"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    times = [e["occurred_at"] for e in seen]
    assert times == sorted(times)
    assert len({e["id"] for e in seen}) == len(seen) >= 7
    assert {e["customer_id"] for e in seen} == {customer_id}

    orders = await profile_api.client.get(
        "/v1/events",
        params={**window, "name": ["Order Completed", "Product Added"], "type": "track"},
        headers=admin,
    )
    assert {e["name"] for e in orders.json()["events"]} == {"Order Completed", "Product Added"}
    later = await profile_api.client.get(
        "/v1/events",
        params={"since": (T0 + timedelta(days=1)).isoformat(), "until": window["until"]},
        headers=admin,
    )
    assert later.status_code == 422
    bad = await profile_api.client.get(
        "/v1/events", params={**window, "cursor": "nope"}, headers=admin
    )
    assert bad.status_code == 422
    assert (await profile_api.client.get("/v1/events", params=window)).status_code == 401
