"""`POST /v1/journeys/{id}/simulate` (port 8004, admin key): the last N days of stored events
replayed through the journey's current version (a draft included), without sending anything."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from kizuna import auth
from kizuna.http import bearer_token
from kizuna.service import ServiceContext, get_context, require_admin
from kizuna_journey import simulate
from kizuna_journey.adapters import profile_events
from kizuna_journey.domain.definition import JourneyDefinition

router = APIRouter(tags=["journey results"])
Admin = Annotated[auth.Principal, Depends(require_admin)]
Context = Annotated[ServiceContext, Depends(get_context)]


class Simulation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(default=30, ge=1, le=365)
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)


@router.post("/v1/journeys/{journey_id}/simulate")
async def simulate_journey(
    journey_id: str,
    admin: Admin,
    context: Context,
    request: Request,
    body: Annotated[Simulation | None, Body()] = None,
) -> dict[str, Any]:
    """How many customers would have entered over the last ``days`` days, and how many
    messages each step would have sent. Nothing is written, nothing is sent."""
    asked = body or Simulation()
    clock = request.app.state.journeys.clock
    until = clock()
    since = until - timedelta(days=asked.days)
    async with context.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.text(
                    "SELECT v.version, v.definition FROM jr_journeys j JOIN jr_versions v"
                    " ON v.workspace_id = j.workspace_id AND v.journey_id = j.id"
                    " AND v.version = coalesce(CAST(:v AS int), j.version)"
                    " WHERE j.workspace_id = :ws AND j.id = :id"
                ),
                {"ws": admin.workspace_id, "id": journey_id, "v": asked.version},
            )
        ).first()
    if row is None:
        raise HTTPException(404, f"no journey {journey_id!r} (or no such version)")
    journey = JourneyDefinition.model_validate(row.definition)
    try:
        names = simulate.events_read(journey)
    except simulate.NotSimulable as error:
        raise HTTPException(422, str(error)) from error
    settings = context.settings
    try:
        events = await profile_events.stored_events(
            str(getattr(settings, "journey_profile_url", "")),
            bearer_token(request),
            admin.workspace_id,
            names,
            since,
            until,
            int(getattr(settings, "journey_simulation_max_events", 500_000)),
        )
    except profile_events.TooManyEvents as error:
        raise HTTPException(422, f"days: {error}") from error
    except profile_events.ProfileUnavailable as error:
        raise HTTPException(503, f"stored events could not be read: {error}") from error
    async with context.engine.begin() as conn:
        summary = await simulate.simulate(
            conn, admin.workspace_id, journey_id, row.version, journey, events, until
        )
        await conn.rollback()
    return {
        "journey_id": journey_id,
        "version": row.version,
        "since": since.isoformat(),
        "until": until.isoformat(),
        **summary,
    }
