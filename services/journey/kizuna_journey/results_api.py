"""Journey results through the API (port 8004, admin key): per journey and version, for the
runs that entered in a date range; as JSON, as a day-by-day series, or as CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response
from pydantic import AwareDatetime

from kizuna import auth
from kizuna.service import ServiceContext, get_context, require_admin
from kizuna_journey.adapters import results_store
from kizuna_journey.domain import results

router = APIRouter(tags=["journey results"])
Admin = Annotated[auth.Principal, Depends(require_admin)]
Context = Annotated[ServiceContext, Depends(get_context)]
Format = Literal["json", "csv"]
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


async def _scope(
    context: ServiceContext,
    workspace_id: str,
    journey_id: str,
    version: int | None,
    since: datetime | None,
    until: datetime | None,
) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        found = await conn.scalar(
            sa.text("SELECT 1 FROM jr_journeys WHERE workspace_id = :ws AND id = :id"),
            {"ws": workspace_id, "id": journey_id},
        )
    if found is None:
        raise HTTPException(404, f"no journey {journey_id!r}")
    until = until or datetime.now(UTC) + timedelta(days=1)
    since = since or EARLIEST
    if until <= since:
        raise HTTPException(422, "until: must be after since")
    return {
        "workspace_id": workspace_id,
        "journey_id": journey_id,
        "version": version,
        "since": since,
        "until": until,
    }


@router.get("/v1/journeys/{journey_id}/results")
async def journey_results(
    journey_id: str,
    admin: Admin,
    context: Context,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    format: Format = "json",
) -> Any:
    """Runs entered in ``[since, until)``: how they ended and converted, treatment against
    holdout (lift with a 95 % interval), each split variant, and each step's messages."""
    scope = await _scope(context, admin.workspace_id, journey_id, version, since, until)
    async with context.engine.connect() as conn:
        groups = await results_store.run_groups(conn, **scope)
        outcomes = await results_store.step_outcomes(conn, **scope)
        messages = await results_store.message_outcomes(conn, **scope)
        tests = await results_store.decided_tests(conn, admin.workspace_id, journey_id, version)
    report = results.report(
        [
            results.RunGroup(g.holdout, g.variant, g.status, g.runs, g.converted, float(g.revenue))
            for g in groups
        ],
        [results.StepCount(o.step_id, o.variant, o.outcome, o.reason, o.n) for o in outcomes]
        + [results.StepCount(m.step_id, m.variant, m.kind, None, m.n) for m in messages],
    )
    if format == "csv":
        return _csv(
            [
                {**{k: v for k, v in row.items() if k != "skipped"},
                 "skipped": sum(row["skipped"].values()),
                 **{f"skipped_{reason}": n for reason, n in row["skipped"].items()}}
                for row in report["steps"]
            ],
            f"{journey_id}-steps.csv",
        )  # fmt: skip
    return {
        "journey_id": journey_id,
        "version": version,
        "since": scope["since"].isoformat(),
        "until": scope["until"].isoformat(),
        **report,
        "ab_tests": [
            {
                "version": t.version,
                "step_id": t.step_id,
                "decided_at": t.decided_at.isoformat(),
                **t.figures,
            }
            for t in tests
        ],
    }


@router.get("/v1/journeys/{journey_id}/results/daily")
async def journey_results_daily(
    journey_id: str,
    admin: Admin,
    context: Context,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    timezone: Annotated[str, Query(max_length=64)] = "UTC",
    format: Format = "json",
) -> Any:
    """A series for charts: per day in ``timezone``, for the runs entered in the range."""
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise HTTPException(422, f"timezone: unknown time zone {timezone!r}") from error
    scope = await _scope(context, admin.workspace_id, journey_id, version, since, until)
    async with context.engine.connect() as conn:
        rows = await results_store.daily(conn, timezone, **scope)
    days = results.daily([dict(row._mapping) for row in rows])
    if format == "csv":
        return _csv(days, f"{journey_id}-daily.csv")
    return {"journey_id": journey_id, "version": version, "timezone": timezone, "days": days}


def _csv(rows: list[dict[str, Any]], filename: str) -> Response:
    columns: list[str] = []
    for row in rows:
        columns += [name for name in row if name not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
