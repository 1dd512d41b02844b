"""Base KPIs per day, week and month, in the requested time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kizuna.envelope import utcnow
from kizuna_profile.domain.kpis import BadParameter, Sales, kpi_series, periods
from tests.integration.profile.conftest import ProfileApi, raw, track

DAY = 60 * 24  # minutes; T0 is 2026-03-01 09:00 UTC (a Sunday)
NOTHING = {
    "orders": 0,
    "revenue": 0.0,
    "average_order_value": None,
    "purchase_frequency": None,
    "repeat_purchase_rate": None,
}


async def seed(api: ProfileApi) -> None:
    ws = api.workspace_id

    def order(user: str, order_id: str, total: float, at: int, workspace_id: str = ws) -> Any:
        properties = {"order_id": order_id, "total": total}
        return track("Order Completed", properties, user_id=user, at=at, workspace_id=workspace_id)

    def refund(user: str, order_id: str, at: int, **amount: float) -> Any:
        properties = {"order_id": order_id, **amount}
        return track("Order Refunded", properties, user_id=user, at=at, workspace_id=ws)

    await api.profiles.feed(
        # Mar 1: a arrives and buys
        raw("page", user_id="a", at=0, workspace_id=ws),
        order("a", "a1", 1000, 1),
        # Mar 2: b buys twice, 200 of the second is refunded; d buys and returns everything
        raw("page", user_id="b", at=DAY, workspace_id=ws),
        order("b", "b1", 300, DAY + 1),
        order("b", "b2", 700, DAY + 2),
        refund("b", "b2", DAY + 3, total=200),
        order("d", "d1", 400, DAY + 4),
        refund("d", "d1", DAY + 5),
        # Mar 3: nothing. Mar 4: a buys again and refunds an order never seen completed;
        # c looks around, then buys at 23:30 UTC (Mar 5 08:30 in Tokyo)
        order("a", "a2", 500, 3 * DAY),
        refund("a", "ghost", 3 * DAY + 1, total=50),
        raw("page", user_id="c", at=3 * DAY + 5, workspace_id=ws),
        order("c", "c1", 100, 3 * DAY + 14 * 60 + 30),
        # another workspace's customer and order count nowhere here
        order("a", "x1", 9999, 1, workspace_id=f"{ws}_elsewhere"),
    )


async def get(api: ProfileApi, **params: str) -> dict[str, Any]:
    found = await api.client.get("/v1/kpis", params=params, headers=api.admin)
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


def by_start(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {period.pop("start"): period for period in body["periods"]}


async def test_daily_kpis(profile_api: ProfileApi) -> None:
    await seed(profile_api)
    body = await get(profile_api, interval="day", **{"from": "2026-03-01", "to": "2026-03-05"})
    assert (body["interval"], body["tz"]) == ("day", "UTC")
    assert by_start(body) == {
        "2026-03-01": {
            "customers": 1,
            "new_customers": 1,
            "active_customers": 1,
            "orders": 1,
            "revenue": 1000.0,
            "average_order_value": 1000.0,
            "purchase_frequency": 1.0,
            "repeat_purchase_rate": 0.0,
        },
        "2026-03-02": {
            "customers": 3,
            "new_customers": 2,
            "active_customers": 2,
            "orders": 3,  # b1, b2 and d1: a fully refunded order still was an order
            "revenue": 800.0,  # 300 + (700 - 200) + 0
            "average_order_value": 266.67,
            "purchase_frequency": 1.5,
            "repeat_purchase_rate": 0.5,  # b ordered twice, d once
        },
        "2026-03-03": {"customers": 3, "new_customers": 0, "active_customers": 0, **NOTHING},
        "2026-03-04": {
            "customers": 4,
            "new_customers": 1,
            "active_customers": 2,
            "orders": 2,  # a2 and c1; the refund of "ghost" is no order
            "revenue": 600.0,
            "average_order_value": 300.0,
            "purchase_frequency": 1.0,
            "repeat_purchase_rate": 0.5,  # a had ordered on Mar 1, c never before
        },
        "2026-03-05": {"customers": 4, "new_customers": 0, "active_customers": 0, **NOTHING},
    }


async def test_periods_follow_the_time_zone(profile_api: ProfileApi) -> None:
    await seed(profile_api)
    tokyo = await get(profile_api, tz="Asia/Tokyo", **{"from": "2026-03-04", "to": "2026-03-05"})
    assert tokyo["tz"] == "Asia/Tokyo"
    days = by_start(tokyo)
    assert days["2026-03-04"] == {
        "customers": 4,
        "new_customers": 1,
        "active_customers": 2,
        "orders": 1,
        "revenue": 500.0,
        "average_order_value": 500.0,
        "purchase_frequency": 1.0,
        "repeat_purchase_rate": 1.0,
    }
    assert days["2026-03-05"] == {
        "customers": 4,
        "new_customers": 0,
        "active_customers": 1,
        "orders": 1,  # 23:30 UTC on Mar 4 is the next morning in Tokyo
        "revenue": 100.0,
        "average_order_value": 100.0,
        "purchase_frequency": 1.0,
        "repeat_purchase_rate": 0.0,
    }


async def test_weeks_and_months(profile_api: ProfileApi) -> None:
    await seed(profile_api)
    weeks = by_start(
        await get(profile_api, interval="week", **{"from": "2026-02-25", "to": "2026-03-08"})
    )
    assert list(weeks) == ["2026-02-23", "2026-03-02"], "weeks start on Monday"
    assert weeks["2026-02-23"]["orders"] == weeks["2026-02-23"]["new_customers"] == 1
    assert weeks["2026-03-02"] == {
        "customers": 4,
        "new_customers": 3,
        "active_customers": 4,
        "orders": 5,
        "revenue": 1400.0,
        "average_order_value": 280.0,
        "purchase_frequency": 1.25,
        "repeat_purchase_rate": 0.5,  # b (twice this week) and a (before), not c or d
    }
    months = by_start(
        await get(profile_api, interval="month", **{"from": "2026-02-10", "to": "2026-03-31"})
    )
    assert months == {
        "2026-02-01": {"customers": 0, "new_customers": 0, "active_customers": 0, **NOTHING},
        "2026-03-01": {
            "customers": 4,
            "new_customers": 4,
            "active_customers": 4,
            "orders": 6,
            "revenue": 2400.0,
            "average_order_value": 400.0,
            "purchase_frequency": 1.5,
            "repeat_purchase_rate": 0.5,
        },
    }


async def test_default_ranges_end_today(profile_api: ProfileApi) -> None:
    today = utcnow().date()
    for interval, count, last in (
        ("day", 30, today),
        ("week", 12, today - timedelta(days=today.weekday())),
        ("month", 12, today.replace(day=1)),
    ):
        starts = [p["start"] for p in (await get(profile_api, interval=interval))["periods"]]
        assert (len(starts), starts[-1]) == (count, last.isoformat()), interval
    days = (await get(profile_api, to="2026-03-05"))["periods"]
    assert (days[0]["start"], days[-1]["start"]) == ("2026-02-04", "2026-03-05")
    most = await get(profile_api, **{"from": "2026-01-01", "to": "2028-09-26"})
    assert len(most["periods"]) == 1000


async def test_bad_parameters_are_refused_with_the_field(profile_api: ProfileApi) -> None:
    await seed(profile_api)
    admin = profile_api.admin
    for params, field in (
        ({"interval": "hour"}, "interval"),
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"tz": "localtime"}, "tz"),  # zoneinfo knows these, PostgreSQL does not
        ({"tz": "posix/Asia/Tokyo"}, "tz"),
        ({"tz": ""}, "tz"),
        ({"from": "2026-03-05", "to": "2026-03-01"}, "from"),
        ({"from": "2026-01-01", "to": "2028-09-27"}, "from"),  # 1,001 days
        ({"from": "1900-01-01", "to": "2026-01-01"}, "from"),
        ({"from": "yesterday"}, "from"),
        ({"from": "9999-12-31", "to": "9999-12-31"}, "from"),
        ({"to": "0001-01-01"}, "to"),
        ({"interval": "month", "to": "3000-01-01"}, "to"),
    ):
        refused = await profile_api.client.get("/v1/kpis", params=params, headers=admin)
        assert refused.status_code == 422, (params, refused.text)
        fields = [f["field"] for f in refused.json()["error"]["fields"]]
        assert fields == [f"query.{field}"], (params, fields)
    assert (await profile_api.client.get("/v1/kpis")).status_code == 401


def test_periods_are_whole_local_days_across_dst() -> None:
    new_york, now = ZoneInfo("America/New_York"), datetime(2026, 3, 1, tzinfo=UTC)
    span = periods("day", date(2026, 3, 7), date(2026, 3, 9), new_york, now)
    assert span.starts == (date(2026, 3, 7), date(2026, 3, 8), date(2026, 3, 9))
    lengths = [
        later - earlier for earlier, later in zip(span.bounds, span.bounds[1:], strict=False)
    ]
    assert lengths == [timedelta(hours=24), timedelta(hours=23), timedelta(hours=24)]
    assert span.bounds[0] == datetime(2026, 3, 7, 5, tzinfo=UTC)
    earliest = periods("week", None, date(1900, 1, 10), new_york, now)
    assert earliest.starts == (date(1900, 1, 1), date(1900, 1, 8)), "defaults stop at 1900"
    with pytest.raises(BadParameter, match="from: must not be after to"):
        periods("month", date(2026, 4, 1), date(2026, 3, 31), new_york, now)


def test_kpi_series_fills_gaps_and_accumulates_customers() -> None:
    starts = [date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)]
    series = kpi_series(starts, 10, {0: 2, 2: 1}, {1: 5}, {2: Sales(3, Decimal("100.005"), 2, 1)})
    assert [p.customers for p in series] == [12, 12, 13]
    assert [p.active_customers for p in series] == [0, 5, 0]
    last = series[2]
    assert (last.orders, last.revenue, last.average_order_value) == (3, 100.005, 33.34)
    assert (last.purchase_frequency, last.repeat_purchase_rate) == (1.5, 0.5)
    assert series[0].repeat_purchase_rate is None
