"""Journeys through the API (port 8004, admin key): define, version, run, enrol, inspect."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna import auth
from kizuna.http import bearer_token, error_body
from kizuna.service import ServiceContext, get_context, require_admin
from kizuna_journey import handlers, scenarios
from kizuna_journey.adapters.templates import TemplateCatalog, Unreachable, referenced
from kizuna_journey.domain import clock, definition
from kizuna_journey.domain.definition import DeliveryRules, JourneyDefinition
from kizuna_journey.runtime import Journeys

router = APIRouter(tags=["journeys"])
Admin = Annotated[auth.Principal, Depends(require_admin)]
Context = Annotated[ServiceContext, Depends(get_context)]
JOURNEY_ID = r"^[a-z0-9][a-z0-9_\-]{0,63}$"
STEP_TAGS = frozenset(
    {"wait", "wait_for_event", "condition", "split", "send", "update_trait", "webhook", "end"}
)
TRIGGER_TAGS = frozenset({"event", "segment", "date", "inactivity", "api", "broadcast"})


class Invalid(Exception):
    def __init__(self, fields: list[dict[str, str]]) -> None:
        self.fields = fields


def invalid_response(error: Invalid) -> JSONResponse:
    return JSONResponse(error_body(422, "the journey is not valid", error.fields), status_code=422)


def _path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if len(parts) > 2 and parts[0] == "steps" and parts[2] in STEP_TAGS:
        del parts[2]
    if len(parts) > 1 and parts[0] == "trigger" and parts[1] in TRIGGER_TAGS:
        del parts[1]
    return ".".join(parts)


def parse(raw: Any) -> JourneyDefinition:
    """The definition, or Invalid naming every field at fault."""
    try:
        journey = JourneyDefinition.model_validate(raw)
    except ValidationError as error:
        raise Invalid(
            [
                {"field": _path(e["loc"]), "problem": e["msg"].removeprefix("Value error, ")}
                for e in error.errors()
            ]
        ) from error
    problems = definition.validate(journey)
    if problems:
        raise Invalid([{"field": p.field, "problem": p.problem} for p in problems])
    return journey


def _journeys(request: Request) -> Journeys:
    journeys: Journeys = request.app.state.journeys
    return journeys


async def _view(conn: AsyncConnection, workspace_id: str, journey_id: str) -> dict[str, Any]:
    row = (
        await conn.execute(
            sa.text(
                "SELECT j.*, v.definition,"
                " (SELECT count(*) FROM jr_runs r WHERE r.workspace_id = j.workspace_id"
                " AND r.journey_id = j.id AND r.status = 'active') AS live_runs"
                " FROM jr_journeys j JOIN jr_versions v ON v.workspace_id = j.workspace_id"
                " AND v.journey_id = j.id AND v.version = j.version"
                " WHERE j.workspace_id = :ws AND j.id = :id"
            ),
            {"ws": workspace_id, "id": journey_id},
        )
    ).first()
    if row is None:
        raise HTTPException(404, f"no journey {journey_id!r}")
    return {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "version": row.version,
        "template": row.template,
        "live_runs": row.live_runs,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "definition": row.definition,
    }


async def check_templates(request: Request, journey: JourneyDefinition) -> list[str]:
    """Raises Invalid for templates the notifier does not have; returns warnings when it
    could not be asked."""
    context: ServiceContext = request.app.state.context
    catalog = TemplateCatalog(getattr(context.settings, "journey_notifier_url", ""))
    named = referenced(dict(journey.steps))
    try:
        missing = await catalog.missing(bearer_token(request), named)
    except Unreachable as error:
        return [f"templates not checked: {error}"]
    if missing:
        raise Invalid(
            [
                {
                    "field": f"steps.{named[t]}.template",
                    "problem": f"no template {t!r} in the notifier",
                }
                for t in sorted(missing)
            ]
        )
    return []


async def _create(
    request: Request,
    context: ServiceContext,
    workspace_id: str,
    raw: dict[str, Any],
    template: str | None = None,
) -> dict[str, Any]:
    raw = dict(raw)
    journey_id = raw.pop("id", None) or f"jr_{uuid.uuid4().hex[:12]}"
    if not isinstance(journey_id, str) or re.match(JOURNEY_ID, journey_id) is None:
        raise Invalid([{"field": "id", "problem": f"must match {JOURNEY_ID}"}])
    journey = parse(raw)
    warnings = await check_templates(request, journey)
    async with context.engine.begin() as conn:
        created = await conn.scalar(
            sa.text(
                "INSERT INTO jr_journeys (workspace_id, id, name, template) VALUES"
                " (:ws, :id, :name, :template) ON CONFLICT DO NOTHING RETURNING id"
            ),
            {"ws": workspace_id, "id": journey_id, "name": journey.name, "template": template},
        )
        if created is None:
            raise HTTPException(409, f"journey {journey_id!r} exists")
        await _store_version(conn, workspace_id, journey_id, 1, journey)
        view = await _view(conn, workspace_id, journey_id)
    return {**view, "warnings": warnings} if warnings else view


async def _store_version(
    conn: AsyncConnection,
    workspace_id: str,
    journey_id: str,
    version: int,
    journey: JourneyDefinition,
) -> None:
    await conn.execute(
        sa.text(
            "INSERT INTO jr_versions (workspace_id, journey_id, version, definition)"
            " VALUES (:ws, :id, :v, CAST(:d AS jsonb)) ON CONFLICT (workspace_id, journey_id,"
            " version) DO UPDATE SET definition = excluded.definition, created_at = now()"
        ),
        {
            "ws": workspace_id,
            "id": journey_id,
            "v": version,
            "d": journey.model_dump_json(by_alias=True, exclude_unset=True),
        },
    )


@router.post("/v1/journeys", status_code=201)
async def create_journey(
    request: Request, admin: Admin, context: Context, body: Annotated[dict[str, Any], Body()]
) -> Any:
    try:
        return await _create(request, context, admin.workspace_id, body)
    except Invalid as error:
        return invalid_response(error)


class FromTemplate(BaseModel):
    id: str | None = Field(default=None, pattern=JOURNEY_ID)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    options: dict[str, Any] = Field(default_factory=dict)


@router.get("/v1/journey-templates")
async def list_templates(_: Admin) -> dict[str, Any]:
    return {"templates": sorted(scenarios.SCENARIOS)}


@router.post("/v1/journeys/from-template/{name}", status_code=201)
async def from_template(
    name: str,
    request: Request,
    admin: Admin,
    context: Context,
    body: FromTemplate | None = None,
) -> Any:
    """A ready-to-edit draft; the default templates it names are created in the notifier
    where they do not exist yet."""
    build = scenarios.SCENARIOS.get(name)
    if build is None:
        raise HTTPException(404, f"no scenario {name!r}; known: {sorted(scenarios.SCENARIOS)}")
    body = body or FromTemplate()
    try:
        scenario = build(body.options)
    except (TypeError, ValueError) as error:
        return invalid_response(Invalid([{"field": "body.options", "problem": str(error)}]))
    if body.name:
        scenario["name"] = body.name
    raw = {**scenario, **({"id": body.id} if body.id else {})}
    defaults = scenarios.templates_of(scenario)
    catalog = TemplateCatalog(getattr(context.settings, "journey_notifier_url", ""))
    try:
        created = await catalog.ensure(bearer_token(request), defaults)
    except Unreachable:
        created = []  # the draft says so in its warnings
    try:
        view = await _create(request, context, admin.workspace_id, raw, template=name)
    except Invalid as error:
        return invalid_response(error)
    view["templates"] = [{**t, "created": t["id"] in created} for t in defaults]
    return view


@router.get("/v1/journeys")
async def list_journeys(
    admin: Admin, context: Context, status: str | None = Query(default=None)
) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT id, name, status, version, template FROM jr_journeys"
                " WHERE workspace_id = :ws AND (CAST(:status AS text) IS NULL OR status = :status)"
                " ORDER BY created_at, id"
            ),
            {"ws": admin.workspace_id, "status": status},
        )
        return {"journeys": [dict(row._mapping) for row in rows.all()]}


@router.get("/v1/journeys/{journey_id}")
async def get_journey(journey_id: str, admin: Admin, context: Context) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        return await _view(conn, admin.workspace_id, journey_id)


@router.get("/v1/journeys/{journey_id}/versions/{version}")
async def get_version(
    journey_id: str,
    version: Annotated[int, Path(ge=1, le=2**31 - 1)],
    admin: Admin,
    context: Context,
) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        found = await conn.scalar(
            sa.text(
                "SELECT definition FROM jr_versions WHERE workspace_id = :ws"
                " AND journey_id = :id AND version = :v"
            ),
            {"ws": admin.workspace_id, "id": journey_id, "v": version},
        )
    if found is None:
        raise HTTPException(404, f"journey {journey_id!r} has no version {version}")
    return {"id": journey_id, "version": version, "definition": found}


@router.put("/v1/journeys/{journey_id}")
async def update_journey(
    journey_id: str,
    request: Request,
    admin: Admin,
    context: Context,
    body: Annotated[dict[str, Any], Body()],
) -> Any:
    """A draft is edited in place; an active or paused journey gets a new version that new
    runs follow, while runs already under way finish on theirs."""
    try:
        journey = parse({k: v for k, v in body.items() if k != "id"})
        warnings = await check_templates(request, journey)
    except Invalid as error:
        return invalid_response(error)
    journeys = _journeys(request)
    async with journeys.outbox.transaction(context.engine) as (conn, outbox):
        row = (
            await conn.execute(
                sa.text(
                    "SELECT status, version FROM jr_journeys WHERE workspace_id = :ws"
                    " AND id = :id FOR UPDATE"
                ),
                {"ws": admin.workspace_id, "id": journey_id},
            )
        ).first()
        if row is None:
            raise HTTPException(404, f"no journey {journey_id!r}")
        if row.status == "archived":
            raise HTTPException(409, "an archived journey cannot be edited")
        version = row.version if row.status == "draft" else row.version + 1
        await _store_version(conn, admin.workspace_id, journey_id, version, journey)
        await conn.execute(
            sa.text(
                "UPDATE jr_journeys SET version = :v, name = :name, updated_at = now()"
                " WHERE workspace_id = :ws AND id = :id"
            ),
            {"ws": admin.workspace_id, "id": journey_id, "v": version, "name": journey.name},
        )
        if row.status == "active":
            await handlers.seed_schedules(
                conn, admin.workspace_id, journey_id, journeys.clock(), outbox
            )
        view = await _view(conn, admin.workspace_id, journey_id)
    return {**view, "warnings": warnings} if warnings else view


TRANSITIONS = {
    "activate": ({"draft", "paused"}, "active"),
    "pause": ({"active"}, "paused"),
    "archive": ({"draft", "active", "paused"}, "archived"),
}


@router.post("/v1/journeys/{journey_id}/activate")
async def activate(journey_id: str, request: Request, admin: Admin, context: Context) -> Any:
    return await change_status(journey_id, "activate", request, admin, context)


@router.post("/v1/journeys/{journey_id}/pause")
async def pause(journey_id: str, request: Request, admin: Admin, context: Context) -> Any:
    return await change_status(journey_id, "pause", request, admin, context)


@router.post("/v1/journeys/{journey_id}/archive")
async def archive(journey_id: str, request: Request, admin: Admin, context: Context) -> Any:
    """Cancels every live run and every pending trigger of the journey."""
    return await change_status(journey_id, "archive", request, admin, context)


async def change_status(
    journey_id: str,
    action: str,
    request: Request,
    admin: auth.Principal,
    context: ServiceContext,
) -> Any:
    allowed, target = TRANSITIONS[action]
    journeys = _journeys(request)
    now = journeys.clock()
    cancelled = False
    async with journeys.outbox.transaction(context.engine) as (conn, outbox):
        status = await conn.scalar(
            sa.text(
                "SELECT status FROM jr_journeys WHERE workspace_id = :ws AND id = :id FOR UPDATE"
            ),
            {"ws": admin.workspace_id, "id": journey_id},
        )
        if status is None:
            raise HTTPException(404, f"no journey {journey_id!r}")
        if status not in allowed:
            raise HTTPException(409, f"a {status} journey cannot {action}")
        await conn.execute(
            sa.text(
                "UPDATE jr_journeys SET status = :s, updated_at = now()"
                " WHERE workspace_id = :ws AND id = :id"
            ),
            {"ws": admin.workspace_id, "id": journey_id, "s": target},
        )
        if target == "active":  # also on resume: birthdays set meanwhile, a changed trigger
            await handlers.seed_schedules(conn, admin.workspace_id, journey_id, now, outbox)
        if target == "archived":
            cancelled = await _cancel_all(conn, admin.workspace_id, journey_id, journeys, now)
        view = await _view(conn, admin.workspace_id, journey_id)
    if cancelled:  # their journey.completed went to the outbox table
        journeys.outbox.pending.set()
    return view


async def _cancel_all(
    conn: AsyncConnection, workspace_id: str, journey_id: str, journeys: Journeys, now: datetime
) -> bool:
    cancelled = await handlers.cancel_journey_runs(
        conn, workspace_id, journey_id, now, journeys.outbox
    )
    await conn.execute(
        sa.text("DELETE FROM jr_schedules WHERE workspace_id = :ws AND journey_id = :id"),
        {"ws": workspace_id, "id": journey_id},
    )
    return cancelled


class Enrolment(BaseModel):
    customer_ids: list[str] = Field(min_length=1, max_length=10_000)
    data: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = Field(
        default=None, max_length=200, description="Repeat it to retry safely"
    )


@router.post("/v1/journeys/{journey_id}/enrolments", status_code=202)
async def enrol(
    journey_id: str, body: Enrolment, request: Request, admin: Admin, context: Context
) -> dict[str, Any]:
    journeys = _journeys(request)
    for index, customer_id in enumerate(body.customer_ids):
        if not customer_id.strip():
            raise HTTPException(422, f"customer_ids.{index}: must not be empty")
    async with journeys.outbox.transaction(context.engine) as (conn, outbox):
        status = await conn.scalar(
            sa.text("SELECT status FROM jr_journeys WHERE workspace_id = :ws AND id = :id"),
            {"ws": admin.workspace_id, "id": journey_id},
        )
        if status is None:
            raise HTTPException(404, f"no journey {journey_id!r}")
        if status != "active":
            raise HTTPException(409, f"the journey is {status}; activate it first")
        started = await handlers.enrol_customers(
            conn,
            admin.workspace_id,
            journey_id,
            body.customer_ids,
            body.data,
            body.request_id or uuid.uuid4().hex,
            journeys.clock(),
            outbox,
        )
    return {"enrolled": len(started), "run_ids": started}


@router.get("/v1/journeys/{journey_id}/runs")
async def list_runs(
    journey_id: str,
    admin: Admin,
    context: Context,
    customer_id: str | None = None,
    status: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str = "",
) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT run_id, customer_id, version, status, holdout, step, due_at,"
                " waiting_for, entered_at, ended_at, end_reason, converted_at FROM jr_runs"
                " WHERE workspace_id = :ws AND journey_id = :id AND run_id > :cursor"
                " AND (CAST(:c AS text) IS NULL OR customer_id = :c)"
                " AND (CAST(:s AS text) IS NULL OR status = :s) ORDER BY run_id LIMIT :n"
            ),
            {
                "ws": admin.workspace_id,
                "id": journey_id,
                "c": customer_id,
                "s": status,
                "n": limit,
                "cursor": cursor,
            },
        )
        runs = [_jsonable(dict(row._mapping)) for row in rows.all()]
    return {"runs": runs, "next_cursor": runs[-1]["run_id"] if len(runs) == limit else None}


@router.get("/v1/runs/{run_id}")
async def get_run(run_id: str, admin: Admin, context: Context) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        run = (
            await conn.execute(
                sa.text("SELECT * FROM jr_runs WHERE workspace_id = :ws AND run_id = :id"),
                {"ws": admin.workspace_id, "id": run_id},
            )
        ).first()
        if run is None:
            raise HTTPException(404, f"no run {run_id!r}")
        steps = await conn.execute(
            sa.text(
                "SELECT execution_id, step_id, step_type, outcome, detail, at FROM jr_steps"
                " WHERE run_id = :id ORDER BY at, seq"
            ),
            {"id": run_id},
        )
        return {
            **_jsonable(dict(run._mapping)),
            "steps": [_jsonable(dict(s._mapping)) for s in steps.all()],
        }


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}


@router.get("/v1/delivery-settings")
async def get_delivery(admin: Admin, context: Context) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        found = await conn.scalar(
            sa.text("SELECT delivery FROM jr_settings WHERE workspace_id = :ws"),
            {"ws": admin.workspace_id},
        )
    return {"delivery": found or {}}


@router.put("/v1/delivery-settings")
async def put_delivery(admin: Admin, context: Context, body: DeliveryRules) -> dict[str, Any]:
    if body.default_timezone and clock.zone(body.default_timezone, "").key != body.default_timezone:
        raise HTTPException(422, f"default_timezone: unknown timezone {body.default_timezone!r}")
    saved = body.model_dump(mode="json", exclude_unset=True)
    async with context.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO jr_settings (workspace_id, delivery) VALUES (:ws, CAST(:d AS jsonb))"
                " ON CONFLICT (workspace_id) DO UPDATE SET delivery = excluded.delivery,"
                " updated_at = now()"
            ),
            {"ws": admin.workspace_id, "d": body.model_dump_json(exclude_unset=True)},
        )
    return {"delivery": saved}
