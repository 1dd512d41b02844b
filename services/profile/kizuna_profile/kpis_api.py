"""The workspace's base KPIs as a time series (day, week or month, in a chosen time zone).

- customers: customers first seen before the period's end (cumulative)
- new_customers: customers first seen in the period
- active_customers: customers with at least one stored event in the period
- orders / revenue: completed orders placed in the period, and their revenue net of refunds
- average_order_value: revenue / orders
- purchase_frequency: orders / customers who ordered in the period
- repeat_purchase_rate: share of the period's buyers who had placed two or more orders by the
  period's end
Weeks start on Monday. Customers erased since no longer count; merged ones count once."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna import auth
from kizuna.envelope import utcnow
from kizuna.service import ServiceContext, get_context, require_admin

router = APIRouter(prefix="/v1/kpis", tags=["kpis"])
Admin = Annotated[auth.Principal, Depends(require_admin)]
Context = Annotated[ServiceContext, Depends(get_context)]
Interval = Literal["day", "week", "month"]
MAX_PERIODS = 1000
DEFAULT_PERIODS = {"day": 30, "week": 12, "month": 12}


def period_start(day: date, interval: Interval) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def next_start(start: date, interval: Interval) -> date:
    if interval == "day":
        return start + timedelta(days=1)
    if interval == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def periods(first: date, last: date, interval: Interval) -> list[date]:
    starts, start = [], period_start(first, interval)
    while start <= last:
        starts.append(start)
        if len(starts) > MAX_PERIODS:
            raise HTTPException(422, f"from: at most {MAX_PERIODS} periods per request")
        start = next_start(start, interval)
    return starts


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise HTTPException(422, f"tz: unknown time zone {tz!r} (e.g. Asia/Tokyo)") from error


async def _grouped(
    conn: AsyncConnection, sql: str, params: dict[str, Any]
) -> dict[date, sa.Row[Any]]:
    rows = await conn.execute(sa.text(sql), params)
    return {row.start: row for row in rows}


def _bucket(column: str) -> str:
    return f"CAST(date_trunc(:unit, {column} AT TIME ZONE :tz) AS date)"


@router.get("", summary="Base KPIs per day, week or month")
async def kpis(
    principal: Admin,
    context: Context,
    interval: Interval = "day",
    from_: Annotated[
        date | None, Query(alias="from", description="First day (YYYY-MM-DD).")
    ] = None,
    to: Annotated[date | None, Query(description="Last day, included (YYYY-MM-DD).")] = None,
    tz: Annotated[str, Query(description="IANA time zone of the periods.")] = "UTC",
) -> dict[str, Any]:
    zone = _zone(tz)
    last = to or utcnow().astimezone(zone).date()
    first = from_ or period_start(last, interval)
    if from_ is None:
        for _ in range(DEFAULT_PERIODS[interval] - 1):
            first = period_start(first - timedelta(days=1), interval)
    if first > last:
        raise HTTPException(422, "from: must not be after to")
    starts = periods(first, last, interval)
    begin = datetime.combine(starts[0], datetime.min.time(), zone)
    end = datetime.combine(next_start(starts[-1], interval), datetime.min.time(), zone)
    params = {"ws": principal.workspace_id, "unit": interval, "tz": tz, "begin": begin, "end": end}
    async with context.engine.connect() as conn:
        before = int(
            await conn.scalar(
                sa.text(
                    "SELECT count(*) FROM profile_customers WHERE workspace_id = :ws"
                    " AND first_seen_at < :begin"
                ),
                params,
            )
            or 0
        )
        new = await _grouped(
            conn,
            f"SELECT {_bucket('first_seen_at')} AS start, count(*) AS n FROM profile_customers"  # noqa: S608
            " WHERE workspace_id = :ws AND first_seen_at >= :begin AND first_seen_at < :end"
            " GROUP BY 1",
            params,
        )
        active = await _grouped(
            conn,
            f"SELECT {_bucket('occurred_at')} AS start, count(DISTINCT customer_id) AS n"  # noqa: S608
            " FROM profile_events WHERE workspace_id = :ws AND occurred_at >= :begin"
            " AND occurred_at < :end GROUP BY 1",
            params,
        )
        orders = await _grouped(
            conn,
            f"SELECT {_bucket('o.ordered_at')} AS start, count(*) AS orders,"  # noqa: S608
            " coalesce(sum(CASE WHEN o.fully_refunded THEN 0"
            "  ELSE greatest(o.amount - o.refunded_amount, 0) END), 0) AS revenue,"
            " count(DISTINCT o.customer_id) AS buyers,"
            " count(DISTINCT o.customer_id) FILTER (WHERE ("
            "  SELECT count(*) FROM profile_orders p WHERE p.workspace_id = o.workspace_id"
            "  AND p.customer_id = o.customer_id AND p.ordered_at IS NOT NULL"
            "  AND p.ordered_at < (date_trunc(:unit, o.ordered_at AT TIME ZONE :tz)"
            "   + CAST('1 ' || :unit AS interval)) AT TIME ZONE :tz) >= 2) AS repeaters"
            " FROM profile_orders o WHERE o.workspace_id = :ws AND o.ordered_at >= :begin"
            " AND o.ordered_at < :end GROUP BY 1",
            params,
        )
    series = []
    customers = before
    for start in starts:
        customers += new[start].n if start in new else 0
        sold = orders.get(start)
        count = sold.orders if sold else 0
        revenue = float(sold.revenue) if sold else 0.0
        buyers = sold.buyers if sold else 0
        series.append(
            {
                "start": start.isoformat(),
                "customers": customers,
                "new_customers": new[start].n if start in new else 0,
                "active_customers": active[start].n if start in active else 0,
                "orders": count,
                "revenue": revenue,
                "average_order_value": round(revenue / count, 2) if count else None,
                "purchase_frequency": round(count / buyers, 4) if buyers else None,
                "repeat_purchase_rate": round(sold.repeaters / buyers, 4) if sold else None,
            }
        )
    return {"interval": interval, "tz": tz, "periods": series}
