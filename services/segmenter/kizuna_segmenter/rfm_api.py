"""RFM through the API (port 8003): a customer's scores, settings, the grid, tier migration."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from kizuna import auth
from kizuna.service import ServiceContext, get_context, require_admin
from kizuna_segmenter.adapters import store
from kizuna_segmenter.domain import rfm
from kizuna_segmenter.runtime import Segmenter

router = APIRouter(prefix="/v1/rfm", tags=["rfm"])
Admin = Annotated[auth.Principal, Depends(require_admin)]
Context = Annotated[ServiceContext, Depends(get_context)]
Month = Annotated[str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")]


def _segmenter(request: Request) -> Segmenter:
    segmenter: Segmenter = request.app.state.segmenter
    return segmenter


class Tier(BaseModel):
    id: str = Field(pattern=r"^[a-z0-9_\-]{1,64}$")
    name: str = Field(min_length=1, max_length=100, description="Display name, e.g. 優良顧客.")
    recency: tuple[int, int] = Field(description="Inclusive range of recency scores (1-5).")
    frequency: tuple[int, int] = Field(description="Inclusive range of frequency scores (1-5).")


class RfmSettings(BaseModel):
    window_days: int = Field(default=365, ge=7, le=3650)
    tiers: list[Tier] | None = Field(
        default=None, description="First match wins; null: the standard map."
    )


def _tiers(settings: store.Settings) -> list[Tier]:
    rules = settings.tiers or rfm.DEFAULT_TIERS
    return [Tier(id=r.id, name=r.name, recency=r.recency, frequency=r.frequency) for r in rules]


@router.get("/settings")
async def get_settings(principal: Admin, context: Context) -> RfmSettings:
    async with context.engine.connect() as conn:
        current = await store.settings_of(conn, principal.workspace_id)
    return RfmSettings(window_days=current.window_days, tiers=_tiers(current))


@router.put("/settings", summary="Change the window or the tiers; everyone is rescored")
async def put_settings(
    body: RfmSettings, request: Request, principal: Admin, context: Context
) -> dict[str, Any]:
    rules = None
    if body.tiers is not None:
        rules = tuple(rfm.TierRule(t.id, t.name, t.recency, t.frequency) for t in body.tiers)
        problem = rfm.check_rules(rules)
        if problem is not None:
            raise HTTPException(422, f"tiers: {problem}")
    async with context.engine.begin() as conn:
        await store.save_settings(conn, principal.workspace_id, body.window_days, rules)
    changed = await _segmenter(request).refresh_bounds(
        principal.workspace_id, force=True, refresh_facts=True
    )
    return {"tier_changes": changed}


@router.post("/recompute", summary="Recompute the boundaries and rescore everyone now")
async def recompute(request: Request, principal: Admin) -> dict[str, Any]:
    changed = await _segmenter(request).refresh_bounds(principal.workspace_id, force=True)
    return {"tier_changes": changed}


@router.get("/bounds")
async def get_bounds(principal: Admin, context: Context) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        bounds, computed_at = await store.bounds_of(conn, principal.workspace_id)
    return {
        "buyers": bounds.buyers,
        "fixed_thresholds": bounds.fixed,
        "recency_days": bounds.recency_days if not bounds.fixed else rfm.DEFAULT_RECENCY_DAYS,
        "frequency": bounds.frequency if not bounds.fixed else rfm.DEFAULT_FREQUENCY,
        "monetary": None if bounds.fixed else bounds.monetary,
        "computed_at": None if computed_at is None else computed_at.isoformat(),
    }


@router.get("/customers/{customer_id}")
async def customer_rfm(customer_id: str, principal: Admin, context: Context) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    sa.text(
                        "SELECT * FROM seg_customers WHERE workspace_id = :ws AND customer_id = :id"
                    ),
                    {"ws": principal.workspace_id, "id": customer_id},
                )
            )
            .mappings()
            .one_or_none()
        )
        settings = await store.settings_of(conn, principal.workspace_id)
    if row is None or row["last_order_at"] is None:
        raise HTTPException(404, f"customer {customer_id!r} has no orders in this workspace")
    names = {t.id: t.name for t in (settings.tiers or rfm.DEFAULT_TIERS)}
    return {
        "customer_id": customer_id,
        "tier": row["tier"],
        "tier_name": names.get(row["tier"] or "", row["tier"]),
        "tier_since": row["tier_since"].isoformat() if row["tier_since"] else None,
        "scores": {
            "recency": row["recency_score"],
            "frequency": row["frequency_score"],
            "monetary": row["monetary_score"],
        },
        "facts": {
            "last_order_at": row["last_order_at"].isoformat(),
            "first_order_at": row["first_order_at"].isoformat(),
            "frequency": row["frequency"],
            "monetary": float(row["monetary"]),
            "lifetime_orders": row["lifetime_orders"],
            "lifetime_revenue": float(row["lifetime_revenue"]),
            "window_days": settings.window_days,
        },
        "scored_at": row["scored_at"].isoformat() if row["scored_at"] else None,
    }


@router.get("/grid", summary="Customers and revenue per recency-by-frequency cell and per tier")
async def grid(principal: Admin, context: Context) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        cells = await conn.execute(
            sa.text(
                "SELECT recency_score AS r, frequency_score AS f, count(*) AS customers,"
                " coalesce(sum(monetary), 0) AS revenue FROM seg_customers"
                " WHERE workspace_id = :ws AND recency_score IS NOT NULL GROUP BY 1, 2"
            ),
            {"ws": principal.workspace_id},
        )
        tiers = await conn.execute(
            sa.text(
                "SELECT tier, count(*) AS customers, coalesce(sum(monetary), 0) AS revenue"
                " FROM seg_customers WHERE workspace_id = :ws AND tier IS NOT NULL GROUP BY 1"
            ),
            {"ws": principal.workspace_id},
        )
        settings = await store.settings_of(conn, principal.workspace_id)
    found = {(c.r, c.f): c for c in cells}
    by_tier = {t.tier: t for t in tiers}
    rules = settings.tiers or rfm.DEFAULT_TIERS
    return {
        "cells": [
            {
                "recency": r,
                "frequency": f,
                "tier": getattr(rfm.tier_of(rfm.Scores(r, f, rfm.NEUTRAL), rules), "id", None),
                "customers": found[r, f].customers if (r, f) in found else 0,
                "revenue": float(found[r, f].revenue) if (r, f) in found else 0.0,
            }
            for r in range(5, 0, -1)
            for f in range(1, 6)
        ],
        "tiers": [
            {
                "id": rule.id,
                "name": rule.name,
                "customers": by_tier[rule.id].customers if rule.id in by_tier else 0,
                "revenue": float(by_tier[rule.id].revenue) if rule.id in by_tier else 0.0,
            }
            for rule in rules
        ],
    }


@router.get("/migrations", summary="Tier migration matrix per month (from, to, customers)")
async def migrations(
    principal: Admin,
    context: Context,
    from_: Annotated[Month, Query(alias="from")] = None,
    to: Month = None,
) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT to_char(date_trunc('month', changed_at AT TIME ZONE 'UTC'), 'YYYY-MM')"
                " AS month, coalesce(from_tier, '') AS from_tier, coalesce(to_tier, '') AS to_tier,"
                " count(*) AS customers FROM seg_tier_history WHERE workspace_id = :ws"
                " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
            ),
            {"ws": principal.workspace_id},
        )
    months: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if (from_ and row.month < from_) or (to and row.month > to):
            continue
        months.setdefault(row.month, []).append(
            {
                "from": row.from_tier or None,
                "to": row.to_tier or None,
                "customers": row.customers,
            }
        )
    return {"months": [{"month": m, "moves": moves} for m, moves in months.items()]}
