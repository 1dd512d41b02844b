"""The workspace's base KPIs as a time series: per day, week (from Monday) or month, in a time zone.

- customers: customers first seen before the period's end (cumulative)
- new_customers: customers first seen in the period
- active_customers: distinct customers with at least one stored event in the period
- orders: completed orders placed (ordered_at) in the period
- revenue: those orders' net revenue: amount minus refunds, 0 when fully refunded
- average_order_value: revenue / orders (null without orders)
- purchase_frequency: orders / distinct customers who placed them (null without orders)
- repeat_purchase_rate: share of those customers with two or more completed orders placed before
  the period's end (null without orders)

Counts are of today's customers: erased ones no longer count, merged ones count once (as the
survivor, first seen at the earlier of the two). Events past the retention are gone, so old
periods lose active customers. A refund lowers the revenue of the period the order was placed in."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna import auth
from kizuna.envelope import utcnow
from kizuna.service import ServiceContext, get_context, require_admin
from kizuna_profile.domain.kpis import (
    BadParameter,
    Interval,
    PeriodKpis,
    Periods,
    Sales,
    kpi_series,
    periods,
    time_zone,
)

router = APIRouter(prefix="/v1/kpis", tags=["kpis"])
Admin = Annotated[auth.Principal, Depends(require_admin)]
Context = Annotated[ServiceContext, Depends(get_context)]


class KpiPeriodRead(BaseModel):
    start: date
    customers: int
    active_customers: int
    new_customers: int
    orders: int
    revenue: float
    average_order_value: float | None
    purchase_frequency: float | None
    repeat_purchase_rate: float | None


class KpisRead(BaseModel):
    interval: Interval
    tz: str
    periods: list[KpiPeriodRead]


def _read(kpis: PeriodKpis) -> KpiPeriodRead:
    return KpiPeriodRead.model_validate(kpis, from_attributes=True)


# width_bucket finds each timestamp's period among the sorted bounds (0 is the first period)
NEW = (
    "SELECT width_bucket(first_seen_at, CAST(:bounds AS timestamptz[])) - 1 AS period,"
    " count(*) AS n FROM profile_customers WHERE workspace_id = :ws"
    " AND first_seen_at >= :begin AND first_seen_at < :end GROUP BY 1"
)
ACTIVE = (
    "SELECT width_bucket(occurred_at, CAST(:bounds AS timestamptz[])) - 1 AS period,"
    " count(DISTINCT customer_id) AS n FROM profile_events WHERE workspace_id = :ws"
    " AND occurred_at >= :begin AND occurred_at < :end GROUP BY 1"
)
SALES = (
    "WITH placed AS ("
    " SELECT width_bucket(ordered_at, CAST(:bounds AS timestamptz[])) - 1 AS period,"
    " customer_id,"
    " CASE WHEN fully_refunded THEN 0 ELSE greatest(amount - refunded_amount, 0) END AS net"
    " FROM profile_orders WHERE workspace_id = :ws"
    " AND ordered_at >= :begin AND ordered_at < :end"
    "), buyers AS ("
    " SELECT period, customer_id, count(*) AS orders, coalesce(sum(net), 0) AS revenue"
    " FROM placed GROUP BY 1, 2"
    ")"
    " SELECT period, sum(orders) AS orders, sum(revenue) AS revenue, count(*) AS buyers,"
    " count(*) FILTER (WHERE orders >= 2 OR EXISTS ("
    "  SELECT 1 FROM profile_orders p WHERE p.workspace_id = :ws"
    "  AND p.customer_id = buyers.customer_id"
    "  AND p.ordered_at < (CAST(:bounds AS timestamptz[]))[period + 1])) AS repeaters"
    " FROM buyers GROUP BY period"
)


async def _counts(conn: AsyncConnection, sql: str, params: dict[str, Any]) -> dict[int, int]:
    return {row.period: row.n for row in await conn.execute(sa.text(sql), params)}


async def _measure(conn: AsyncConnection, workspace_id: str, span: Periods) -> list[PeriodKpis]:
    params = {
        "ws": workspace_id,
        "bounds": list(span.bounds),
        "begin": span.bounds[0],
        "end": span.bounds[-1],
    }
    before = await conn.scalar(
        sa.text(
            "SELECT count(*) FROM profile_customers"
            " WHERE workspace_id = :ws AND first_seen_at < :begin"
        ),
        params,
    )
    sales = {
        row.period: Sales(
            int(row.orders), Decimal(row.revenue), int(row.buyers), int(row.repeaters)
        )
        for row in await conn.execute(sa.text(SALES), params)
    }
    return kpi_series(
        span.starts,
        int(before or 0),
        await _counts(conn, NEW, params),
        await _counts(conn, ACTIVE, params),
        sales,
    )


@router.get("", summary="Base KPIs per day, week or month")
async def kpis(
    principal: Admin,
    context: Context,
    interval: Annotated[Interval, Query(description="Length of a period.")] = "day",
    from_: Annotated[
        date | None,
        Query(
            alias="from",
            description="First day, YYYY-MM-DD (default: 30 days, 12 weeks or 12 months back).",
        ),
    ] = None,
    to: Annotated[
        date | None, Query(description="Last day, included, YYYY-MM-DD (default: today).")
    ] = None,
    tz: Annotated[str, Query(description="IANA time zone of the calendar.")] = "UTC",
) -> KpisRead:
    try:
        span = periods(interval, from_, to, time_zone(tz), utcnow())
    except BadParameter as bad:
        raise RequestValidationError(
            [{"loc": ("query", bad.field), "msg": bad.problem, "type": "value_error"}]
        ) from bad
    async with context.engine.connect() as conn:
        series = await _measure(conn, principal.workspace_id, span)
    return KpisRead(interval=interval, tz=tz, periods=[_read(kpis) for kpis in series])
