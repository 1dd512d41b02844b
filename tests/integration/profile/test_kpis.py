"""Base KPIs per day, week and month, in the workspace's time zone."""

from __future__ import annotations

from typing import Any

from tests.integration.profile.conftest import ProfileApi, raw, track

DAY = 60 * 24  # minutes; T0 is 2026-03-01 09:00 UTC (a Sunday)


async def seed(api: ProfileApi) -> None:
    ws = api.workspace_id

    def order(user: str, order_id: str, total: float, at: int) -> Any:
        return track(
            "Order Completed",
            {"order_id": order_id, "total": total},
            user_id=user,
            at=at,
            workspace_id=ws,
        )

    await api.profiles.feed(
        raw("page", user_id="a", at=0, workspace_id=ws),  # Mar 1: a arrives and buys
        order("a", "a1", 1000, 1),
        raw("page", user_id="b", at=DAY, workspace_id=ws),  # Mar 2: b arrives, buys twice
        order("b", "b1", 300, DAY + 1),
        order("b", "b2", 700, DAY + 2),
        track(
            "Order Refunded",
            {"order_id": "b2", "total": 200},
            user_id="b",
            at=DAY + 3,
            workspace_id=ws,
        ),
        # Mar 3: nothing. Mar 4: a buys again; c only looks around
        order("a", "a2", 500, 3 * DAY),
        raw("page", user_id="c", at=3 * DAY + 5, workspace_id=ws),
        # Mar 4 23:30 UTC is Mar 5 08:30 in Tokyo
        order("c", "c1", 100, 3 * DAY + 14 * 60 + 30),
    )


async def test_daily_kpis(profile_api: ProfileApi) -> None:
    await seed(profile_api)
    found = await profile_api.client.get(
        "/v1/kpis",
        params={"interval": "day", "from": "2026-03-01", "to": "2026-03-05"},
        headers=profile_api.admin,
    )
    assert found.status_code == 200, found.text
    days = {p["start"]: p for p in found.json()["periods"]}
    assert list(days) == ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]
    assert days["2026-03-01"] == {
        "start": "2026-03-01",
        "customers": 1,
        "new_customers": 1,
        "active_customers": 1,
        "orders": 1,
        "revenue": 1000.0,
        "average_order_value": 1000.0,
        "purchase_frequency": 1.0,
        "repeat_purchase_rate": 0.0,
    }
    mar2 = days["2026-03-02"]
    assert (mar2["customers"], mar2["new_customers"], mar2["orders"]) == (2, 1, 2)
    assert mar2["revenue"] == 800.0, "300 + 700 - 200 refunded"
    assert mar2["purchase_frequency"] == 2.0
    assert mar2["repeat_purchase_rate"] == 1.0, "b had two orders by the day's end"
    mar3 = days["2026-03-03"]
    assert (mar3["customers"], mar3["active_customers"], mar3["orders"]) == (2, 0, 0)
    assert mar3["average_order_value"] is None
    mar4 = days["2026-03-04"]
    assert (mar4["customers"], mar4["active_customers"], mar4["orders"]) == (3, 2, 2)
    assert mar4["repeat_purchase_rate"] == 0.5, "a repeats, c buys for the first time"


async def test_time_zone_weeks_and_months(profile_api: ProfileApi) -> None:
    await seed(profile_api)
    admin = profile_api.admin
    tokyo = await profile_api.client.get(
        "/v1/kpis",
        params={"from": "2026-03-04", "to": "2026-03-05", "tz": "Asia/Tokyo"},
        headers=admin,
    )
    days = {p["start"]: p for p in tokyo.json()["periods"]}
    assert days["2026-03-04"]["orders"] == 1
    assert days["2026-03-05"]["orders"] == 1, "23:30 UTC is the next morning in Tokyo"
    weeks = await profile_api.client.get(
        "/v1/kpis",
        params={"interval": "week", "from": "2026-02-23", "to": "2026-03-08"},
        headers=admin,
    )
    [first, second] = weeks.json()["periods"]
    assert (first["start"], first["orders"], first["new_customers"]) == ("2026-02-23", 1, 1)
    assert (second["start"], second["orders"], second["customers"]) == ("2026-03-02", 4, 3)
    months = await profile_api.client.get(
        "/v1/kpis",
        params={"interval": "month", "from": "2026-02-01", "to": "2026-03-31"},
        headers=admin,
    )
    [feb, mar] = months.json()["periods"]
    assert (feb["start"], feb["orders"], feb["customers"]) == ("2026-02-01", 0, 0)
    assert (mar["orders"], mar["revenue"], mar["active_customers"]) == (5, 2400.0, 3)
    default = await profile_api.client.get("/v1/kpis", params={"interval": "month"}, headers=admin)
    assert len(default.json()["periods"]) == 12


async def test_bad_parameters_are_refused_with_the_field(profile_api: ProfileApi) -> None:
    admin = profile_api.admin
    for params, field in (
        ({"interval": "hour"}, "interval"),
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"from": "2026-03-05", "to": "2026-03-01"}, "from"),
        ({"from": "1900-01-01", "to": "2026-01-01"}, "from"),
        ({"from": "yesterday"}, "from"),
    ):
        refused = await profile_api.client.get("/v1/kpis", params=params, headers=admin)
        assert refused.status_code == 422, params
        error = refused.json()["error"]
        named = [f["field"] for f in error.get("fields", [])] + [error["message"]]
        assert any(field in text for text in named), (params, error)
    assert (await profile_api.client.get("/v1/kpis")).status_code == 401
