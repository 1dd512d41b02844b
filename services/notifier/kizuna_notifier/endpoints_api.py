"""Integration webhook endpoints through the API (port 8005, admin key): subscribe, change,
rotate the secret, read the attempt log, replay a time range, replay the dead letters."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict

from kizuna import auth
from kizuna.envelope import utcnow
from kizuna.service import ServiceContext, get_context, require_admin
from kizuna_notifier.adapters import integration_store as store
from kizuna_notifier.adapters.webhooks import WebhookPoster
from kizuna_notifier.domain import endpoints
from kizuna_notifier.domain.endpoints import EndpointChange, EndpointIn, Rotation
from kizuna_notifier.domain.integrations import EVENT_TYPES

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["integration webhooks"])
event_types = APIRouter(tags=["integration webhooks"])
Admin = Annotated[auth.Principal, Depends(require_admin)]
Context = Annotated[ServiceContext, Depends(get_context)]


class Replay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime
    until: AwareDatetime | None = None
    failed_only: bool = False


def _view(row: Any) -> dict[str, Any]:
    view = {
        name: getattr(row, name)
        for name in (
            "id",
            "url",
            "description",
            "event_types",
            "enabled",
            "disabled_reason",
        )
    }
    for name in ("disabled_at", "failing_since", "last_success_at", "created_at", "updated_at"):
        value = getattr(row, name)
        view[name] = value.isoformat() if value is not None else None
    return view


def _now(request: Request) -> datetime:
    clock = getattr(request.app.state.dispatcher, "clock", utcnow)
    now: datetime = clock()
    return now


async def _refusal(request: Request, url: str) -> None:
    poster: WebhookPoster = request.app.state.dispatcher.poster
    reason = await poster.refusal(url)
    if reason is not None:
        raise HTTPException(422, f"url: {reason}")


async def _endpoint(context: ServiceContext, workspace_id: str, endpoint_id: str) -> Any:
    async with context.engine.connect() as conn:
        row = await store.endpoint(conn, workspace_id, endpoint_id)
    if row is None:
        raise HTTPException(404, f"no webhook endpoint {endpoint_id!r}")
    return row


@event_types.get("/v1/webhook-event-types")
async def list_event_types(_: Admin) -> dict[str, list[str]]:
    return {"event_types": list(EVENT_TYPES)}


@router.post("", status_code=201)
async def create_endpoint(
    body: EndpointIn, admin: Admin, context: Context, request: Request
) -> dict[str, Any]:
    """Subscribes an endpoint; the answer carries its signing secret (also at ``/secret``)."""
    await _refusal(request, body.url)
    secret = body.secret or endpoints.new_secret()
    async with context.engine.begin() as conn:
        row = await store.create_endpoint(
            conn,
            {
                "id": "ep_" + secrets.token_hex(12),
                "ws": admin.workspace_id,
                "url": body.url,
                "description": body.description,
                "event_types": body.event_types,
                "enabled": body.enabled,
                "secrets": [{"secret": secret, "expires_at": None}],
            },
        )
    return {**_view(row), "secret": secret}


@router.get("")
async def list_endpoints(admin: Admin, context: Context) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        rows = await store.list_endpoints(conn, admin.workspace_id)
    return {"endpoints": [_view(row) for row in rows]}


@router.get("/{endpoint_id}")
async def get_endpoint(endpoint_id: str, admin: Admin, context: Context) -> dict[str, Any]:
    return _view(await _endpoint(context, admin.workspace_id, endpoint_id))


@router.patch("/{endpoint_id}")
async def change_endpoint(
    endpoint_id: str, body: EndpointChange, admin: Admin, context: Context, request: Request
) -> dict[str, Any]:
    """Changes the given fields; ``enabled: true`` re-enables a disabled endpoint, and what is
    still pending for it goes out again."""
    await _endpoint(context, admin.workspace_id, endpoint_id)
    changes = body.model_dump(exclude_none=True)
    if "url" in changes:
        await _refusal(request, changes["url"])
    if changes:
        async with context.engine.begin() as conn:
            await store.update_endpoint(conn, admin.workspace_id, endpoint_id, changes)
        request.app.state.dispatcher.wakeup.set()
    return _view(await _endpoint(context, admin.workspace_id, endpoint_id))


@router.delete("/{endpoint_id}", status_code=204)
async def delete_endpoint(endpoint_id: str, admin: Admin, context: Context) -> None:
    async with context.engine.begin() as conn:
        if not await store.delete_endpoint(conn, admin.workspace_id, endpoint_id):
            raise HTTPException(404, f"no webhook endpoint {endpoint_id!r}")


@router.get("/{endpoint_id}/secret")
async def get_secret(
    endpoint_id: str, admin: Admin, context: Context, request: Request
) -> dict[str, Any]:
    """The secrets that sign deliveries now: the newest first, and during a rotation's overlap
    the previous one with its ``expires_at``."""
    row = await _endpoint(context, admin.workspace_id, endpoint_id)
    active = endpoints.active(row.secrets, _now(request))
    return {"secret": active[0]["secret"], "secrets": active}


@router.post("/{endpoint_id}/rotate-secret")
async def rotate_secret(
    endpoint_id: str, admin: Admin, context: Context, request: Request, body: Rotation | None = None
) -> dict[str, Any]:
    """A new secret signs from now on; the old one keeps signing too until the overlap ends
    (default 24 h), so receivers can switch without losing a delivery."""
    rotation = body or Rotation()
    row = await _endpoint(context, admin.workspace_id, endpoint_id)
    fresh = rotation.secret or endpoints.new_secret()
    now = _now(request)
    kept = endpoints.rotated(row.secrets, fresh, now, timedelta(seconds=rotation.overlap_seconds))
    async with context.engine.begin() as conn:
        await store.save_secrets(conn, endpoint_id, kept)
    return {"secret": fresh, "secrets": endpoints.active(kept, now)}


@router.post("/{endpoint_id}/replay")
async def replay(
    endpoint_id: str, body: Replay, admin: Admin, context: Context, request: Request
) -> dict[str, int]:
    """Sends again every kept message of ``[since, until)`` this endpoint subscribes to
    (``failed_only``: the ones it has not acknowledged), with their original ``webhook-id``."""
    row = await _endpoint(context, admin.workspace_id, endpoint_id)
    now = _now(request)
    until = body.until or now
    if until <= body.since:
        raise HTTPException(422, "until: must be after since")
    async with context.engine.begin() as conn:
        count = await store.replay(
            conn,
            admin.workspace_id,
            endpoint_id,
            list(row.event_types),
            body.since,
            until,
            now,
            body.failed_only,
        )
    request.app.state.dispatcher.wakeup.set()
    return {"replayed": count}


@router.get("/{endpoint_id}/attempts")
async def list_attempts(
    endpoint_id: str,
    admin: Admin,
    context: Context,
    message_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    await _endpoint(context, admin.workspace_id, endpoint_id)
    async with context.engine.connect() as conn:
        rows = await store.attempts_of(conn, endpoint_id, message_id, limit)
    return {
        "attempts": [{**row._mapping, "attempted_at": row.attempted_at.isoformat()} for row in rows]
    }


@router.get("/{endpoint_id}/dead-letters")
async def list_dead_letters(
    endpoint_id: str,
    admin: Admin,
    context: Context,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    await _endpoint(context, admin.workspace_id, endpoint_id)
    async with context.engine.connect() as conn:
        rows = await store.dead_letters(conn, endpoint_id, limit)
    return {
        "dead_letters": [{**row._mapping, "updated_at": row.updated_at.isoformat()} for row in rows]
    }


@router.post("/{endpoint_id}/dead-letters/replay")
async def replay_dead_letters(
    endpoint_id: str, admin: Admin, context: Context, request: Request
) -> dict[str, int]:
    await _endpoint(context, admin.workspace_id, endpoint_id)
    async with context.engine.begin() as conn:
        count = await store.replay_dead(conn, endpoint_id, _now(request))
    request.app.state.dispatcher.wakeup.set()
    return {"replayed": count}
