"""Analysis (port 8003): deciles, LTV, preferences (CTB), and the engagement score."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from kizuna import auth
from kizuna.service import ServiceContext, get_context, require_admin
from kizuna_segmenter import engagement
from kizuna_segmenter.domain.engagement import ScoreSettings, decayed
from kizuna_segmenter.runtime import Segmenter

router = APIRouter(tags=["analysis"])
Admin = Annotated[auth.Principal, Depends(require_admin)]
Context = Annotated[ServiceContext, Depends(get_context)]
ORDER_WEIGHT = 3  # a purchase says more about taste than a view
TOP = 5


@router.get("/v1/analysis/deciles", summary="Buyers ranked by revenue into ten equal groups")
async def deciles(principal: Admin, context: Context) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.text(
                    "SELECT decile, count(*) AS customers, sum(lifetime_revenue) AS revenue,"
                    " min(lifetime_revenue) AS low, max(lifetime_revenue) AS high FROM ("
                    " SELECT lifetime_revenue, ntile(10) OVER (ORDER BY lifetime_revenue DESC,"
                    "  customer_id) AS decile FROM seg_customers WHERE workspace_id = :ws"
                    "  AND lifetime_orders > 0) d GROUP BY decile ORDER BY decile"
                ),
                {"ws": principal.workspace_id},
            )
        ).all()
    total = float(sum(r.revenue for r in rows)) or 1.0
    cumulative = 0.0
    result = []
    for row in rows:
        revenue = float(row.revenue)
        cumulative += revenue
        result.append(
            {
                "decile": row.decile,
                "customers": row.customers,
                "revenue": revenue,
                "share": round(revenue / total, 4),
                "cumulative_share": round(cumulative / total, 4),
                "min_revenue": float(row.low),
                "max_revenue": float(row.high),
            }
        )
    return {"deciles": result}


@router.get("/v1/analysis/ltv", summary="Historical revenue per customer: overall, by cohort, tier")
async def ltv(principal: Admin, context: Context) -> dict[str, Any]:
    params = {"ws": principal.workspace_id}
    base = "FROM seg_customers WHERE workspace_id = :ws AND lifetime_orders > 0"
    async with context.engine.connect() as conn:
        overall = (
            await conn.execute(
                sa.text(
                    "SELECT count(*) AS customers, coalesce(avg(lifetime_revenue), 0) AS ltv,"
                    f" coalesce(avg(lifetime_orders), 0) AS orders {base}"
                ),
                params,
            )
        ).one()
        cohorts = await conn.execute(
            sa.text(
                "SELECT to_char(date_trunc('month', first_order_at AT TIME ZONE 'UTC'),"
                " 'YYYY-MM') AS cohort, count(*) AS customers, avg(lifetime_revenue) AS ltv,"
                f" avg(lifetime_orders) AS orders {base} GROUP BY 1 ORDER BY 1"
            ),
            params,
        )
        tiers = await conn.execute(
            sa.text(
                "SELECT tier, count(*) AS customers, avg(lifetime_revenue) AS ltv,"
                f" avg(lifetime_orders) AS orders {base} GROUP BY 1 ORDER BY 3 DESC"
            ),
            params,
        )

    def figures(row: Any) -> dict[str, Any]:
        return {
            "customers": row.customers,
            "average_ltv": round(float(row.ltv), 2),
            "average_orders": round(float(row.orders), 2),
        }

    return {
        "overall": figures(overall),
        "by_first_order_month": [{"cohort": r.cohort, **figures(r)} for r in cohorts],
        "by_tier": [{"tier": r.tier, **figures(r)} for r in tiers],
    }


@router.get("/v1/analysis/customers/{customer_id}/preferences", summary="Top categories, brands")
async def preferences(customer_id: str, principal: Admin, context: Context) -> dict[str, Any]:
    """CTB: categories and brands weighted by views (1) and purchased products (3)."""
    params = {"ws": principal.workspace_id, "id": customer_id, "w": ORDER_WEIGHT, "top": TOP}
    result: dict[str, Any] = {"customer_id": customer_id}
    async with context.engine.connect() as conn:
        for field_name, key in (("categories", "category"), ("brands", "brand")):
            rows = await conn.execute(
                sa.text(
                    "SELECT value, sum(weight) AS score FROM ("
                    " SELECT properties ->> :key AS value, 1 AS weight FROM seg_events"
                    "  WHERE workspace_id = :ws AND customer_id = :id AND name = 'Product Viewed'"
                    " UNION ALL"
                    " SELECT p ->> :key, :w FROM seg_events,"
                    "  jsonb_array_elements(CASE WHEN jsonb_typeof(properties -> 'products')"
                    "  = 'array' THEN properties -> 'products' ELSE '[]'::jsonb END) p"
                    "  WHERE workspace_id = :ws AND customer_id = :id AND name = 'Order Completed'"
                    ") s WHERE value IS NOT NULL AND value <> '' GROUP BY value"
                    " ORDER BY score DESC, value LIMIT :top"
                ),
                {**params, "key": key},
            )
            result[field_name] = [{"name": r.value, "score": int(r.score)} for r in rows]
    return result


class ScoreSettingsBody(BaseModel):
    points: dict[str, float] = Field(
        description="Points per event name (track names, Page Viewed)."
    )
    half_life_days: float = Field(gt=0, le=3650)
    thresholds: list[float] = Field(default_factory=list, max_length=20)


@router.get("/v1/engagement/settings")
async def get_score_settings(principal: Admin, context: Context) -> ScoreSettingsBody:
    async with context.engine.connect() as conn:
        value = await engagement.settings_of(conn, principal.workspace_id)
    return ScoreSettingsBody(
        points=dict(value.points),
        half_life_days=value.half_life_days,
        thresholds=list(value.thresholds),
    )


@router.put("/v1/engagement/settings")
async def put_score_settings(
    body: ScoreSettingsBody, principal: Admin, context: Context
) -> ScoreSettingsBody:
    async with context.engine.begin() as conn:
        await engagement.save_settings(
            conn,
            principal.workspace_id,
            ScoreSettings(body.points, body.half_life_days, tuple(body.thresholds)),
        )
    return body


@router.get("/v1/engagement/customers/{customer_id}", summary="The score, decayed to now")
async def customer_score(
    customer_id: str, request: Request, principal: Admin, context: Context
) -> dict[str, Any]:
    segmenter: Segmenter = request.app.state.segmenter
    async with context.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.text(
                    "SELECT engagement_score, engagement_at FROM seg_customers"
                    " WHERE workspace_id = :ws AND customer_id = :id"
                ),
                {"ws": principal.workspace_id, "id": customer_id},
            )
        ).one_or_none()
        settings = await engagement.settings_of(conn, principal.workspace_id)
    if row is None:
        raise HTTPException(404, f"no customer {customer_id!r} in this workspace")
    now = segmenter.clock()
    score = decayed(row.engagement_score, row.engagement_at, now, settings.half_life_days)
    return {"customer_id": customer_id, "score": round(score, 2), "as_of": now.isoformat()}
