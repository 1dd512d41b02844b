"""Templates through the API (port 8005, admin key): save (checked), read, list, preview."""

from __future__ import annotations

import re
from typing import Annotated, Any

import httpx
import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from kizuna import auth
from kizuna.http import bearer_token, error_body
from kizuna.service import ServiceContext, get_context, require_admin
from kizuna_notifier.domain import templates
from kizuna_notifier.domain.templates import TemplateBody

router = APIRouter(prefix="/v1/templates", tags=["templates"])
Admin = Annotated[auth.Principal, Depends(require_admin)]
Context = Annotated[ServiceContext, Depends(get_context)]
TEMPLATE_ID = r"^[a-z0-9][a-z0-9_\-.]{0,127}$"


def _refused(fields: list[dict[str, str]]) -> JSONResponse:
    return JSONResponse(error_body(422, "the template is not valid", fields), status_code=422)


def parse(raw: dict[str, Any]) -> TemplateBody | JSONResponse:
    try:
        template = TemplateBody.model_validate(raw)
    except ValidationError as error:
        return _refused(
            [
                {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
                for e in error.errors()
            ]
        )
    problems = templates.check(template)
    if problems:
        return _refused([{"field": p.field, "problem": p.problem} for p in problems])
    return template


def _check_id(template_id: str) -> None:
    if re.match(TEMPLATE_ID, template_id) is None:
        raise HTTPException(422, f"template id must match {TEMPLATE_ID}")


@router.put("/{template_id}")
async def save_template(
    template_id: str, admin: Admin, context: Context, body: Annotated[dict[str, Any], Body()]
) -> Any:
    """Creates or replaces the template; refused (422) with the part, line and reason when a
    part does not parse, names an unknown variable or does not render."""
    _check_id(template_id)
    parsed = parse(body)
    if isinstance(parsed, JSONResponse):
        return parsed
    async with context.engine.begin() as conn:
        row = (
            await conn.execute(
                sa.text(
                    "INSERT INTO nt_templates (workspace_id, id, channel, body)"
                    " VALUES (:ws, :id, :channel, CAST(:body AS jsonb))"
                    " ON CONFLICT (workspace_id, id) DO UPDATE SET channel = excluded.channel,"
                    " body = excluded.body, version = nt_templates.version + 1,"
                    " updated_at = now() RETURNING version, created_at, updated_at"
                ),
                {
                    "ws": admin.workspace_id,
                    "id": template_id,
                    "channel": parsed.channel,
                    "body": parsed.model_dump_json(exclude_none=True),
                },
            )
        ).one()
    return {
        "id": template_id,
        "version": row.version,
        "updated_at": row.updated_at.isoformat(),
        **parsed.model_dump(exclude_none=True),
    }


async def load(context: ServiceContext, workspace_id: str, template_id: str) -> TemplateBody:
    async with context.engine.connect() as conn:
        raw = await conn.scalar(
            sa.text("SELECT body FROM nt_templates WHERE workspace_id = :ws AND id = :id"),
            {"ws": workspace_id, "id": template_id},
        )
    if raw is None:
        raise HTTPException(404, f"no template {template_id!r}")
    return TemplateBody.model_validate(raw)


@router.get("")
async def list_templates(admin: Admin, context: Context) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT id, channel, version, body->>'name' AS name, updated_at FROM nt_templates"
                " WHERE workspace_id = :ws ORDER BY id"
            ),
            {"ws": admin.workspace_id},
        )
        return {
            "templates": [
                {**dict(r._mapping), "updated_at": r.updated_at.isoformat()} for r in rows.all()
            ]
        }


@router.get("/{template_id}")
async def get_template(template_id: str, admin: Admin, context: Context) -> dict[str, Any]:
    template = await load(context, admin.workspace_id, template_id)
    return {"id": template_id, **template.model_dump(exclude_none=True)}


@router.delete("/{template_id}", status_code=204)
async def delete_template(template_id: str, admin: Admin, context: Context) -> None:
    async with context.engine.begin() as conn:
        result = await conn.execute(
            sa.text("DELETE FROM nt_templates WHERE workspace_id = :ws AND id = :id"),
            {"ws": admin.workspace_id, "id": template_id},
        )
    if not result.rowcount:
        raise HTTPException(404, f"no template {template_id!r}")


class Preview(BaseModel):
    customer_id: str | None = Field(
        default=None, description="Render for this customer, read from the profile service"
    )
    customer: dict[str, Any] | None = Field(default=None, description="Or these fields")
    data: dict[str, Any] = Field(default_factory=dict)
    locale: str | None = Field(default=None, pattern=templates.LOCALE)


@router.post("/{template_id}/preview")
async def preview(
    template_id: str, body: Preview, request: Request, admin: Admin, context: Context
) -> Any:
    template = await load(context, admin.workspace_id, template_id)
    customer = dict(templates.SAMPLE_CONTEXT["customer"])
    if body.customer_id is not None:
        customer = await _profile_customer(request, body.customer_id)
    elif body.customer is not None:
        customer = body.customer
    render_context = {
        **templates.SAMPLE_CONTEXT,
        "customer": customer,
        "data": {**templates.SAMPLE_CONTEXT["data"], **body.data},
        "workspace": {"id": admin.workspace_id},
    }
    locale = body.locale or customer.get("locale")
    try:
        rendered = templates.render(template, render_context, locale)
    except templates.RenderFailed as error:
        return JSONResponse(
            error_body(
                422,
                "the template does not render",
                [{"field": error.part, "problem": error.reason}],
            ),
            status_code=422,
        )
    return {"id": template_id, "locale": locale, **rendered.model_dump(exclude_none=True)}


async def _profile_customer(request: Request, customer_id: str) -> dict[str, Any]:
    """The customer as the profile service shows it, asked with the caller's own admin key."""
    settings = request.app.state.context.settings
    url = f"{settings.notifier_profile_url}/v1/customers/{customer_id}"
    headers = {"Authorization": f"Bearer {bearer_token(request)}"}
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(url, headers=headers)
    except httpx.HTTPError as error:
        raise HTTPException(503, f"the profile service did not answer: {error}") from error
    if response.status_code == 404:
        raise HTTPException(404, f"no customer {customer_id!r}")
    if response.status_code != 200:
        raise HTTPException(502, f"the profile service answered {response.status_code}")
    return customer_context(response.json())


def customer_context(record: dict[str, Any]) -> dict[str, Any]:
    """Template variables from a profile record: the well-known traits at the top, the rest
    under ``traits``, facts, cart, segments and RFM."""
    profile = record.get("profile") or {}
    facts = record.get("facts") or {}
    return {
        **{k: v for k, v in profile.items() if v is not None},
        "id": record.get("id"),
        "traits": record.get("traits") or {},
        "facts": facts,
        "cart": facts.get("cart") or {},
        "segments": record.get("segments") or [],
        "rfm": record.get("rfm") or {},
    }
