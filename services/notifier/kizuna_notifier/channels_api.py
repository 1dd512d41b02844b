"""Channel settings per workspace (admin key): the sender address, the LINE channel access
token, rate limits. ``PUT`` replaces a channel's settings, ``DELETE`` returns it to the
service's defaults; the LINE token is write-only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from kizuna import auth
from kizuna.http import error_body
from kizuna.service import ServiceContext, get_context, require_admin
from kizuna_notifier.adapters import store
from kizuna_notifier.domain import channels
from kizuna_notifier.settings import NotifierSettings

router = APIRouter(prefix="/v1/channels", tags=["channels"])
Admin = Annotated[auth.Principal, Depends(require_admin)]
Context = Annotated[ServiceContext, Depends(get_context)]


def _known(channel: str) -> type[channels.Limits]:
    model = channels.MODELS.get(channel)
    if model is None:
        raise HTTPException(
            404, f"no channel {channel!r}; there are {', '.join(channels.CHANNELS)}"
        )
    return model


def _view(channel: str, config: dict[str, Any], settings: NotifierSettings) -> dict[str, Any]:
    defaults = {
        "email": settings.notifier_email_per_second,
        "line": settings.notifier_line_per_second,
        "webhook": settings.notifier_webhook_per_second,
    }
    per_second, burst = channels.rate(config, defaults[channel])
    view = {"channel": channel, **channels.shown(channel, config)}
    view["effective"] = {"rate_per_second": per_second, "burst": burst}
    if channel == "email":
        view["effective"]["from"] = config.get("from") or settings.notifier_from
    return view


def _settings(request: Request) -> NotifierSettings:
    settings: NotifierSettings = request.app.state.delivery.settings
    return settings


@router.get("")
async def list_channels(admin: Admin, context: Context, request: Request) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        stored = await store.channel_configs(conn, admin.workspace_id)
    settings = _settings(request)
    return {"channels": [_view(c, stored.get(c, {}), settings) for c in channels.CHANNELS]}


@router.get("/{channel}")
async def get_channel(
    channel: str, admin: Admin, context: Context, request: Request
) -> dict[str, Any]:
    _known(channel)
    async with context.engine.connect() as conn:
        stored = await store.channel_configs(conn, admin.workspace_id)
    return _view(channel, stored.get(channel, {}), _settings(request))


@router.put("/{channel}")
async def save_channel(
    channel: str,
    admin: Admin,
    context: Context,
    request: Request,
    body: Annotated[dict[str, Any], Body()],
) -> Any:
    model = _known(channel)
    try:
        parsed = model.model_validate(body)
    except ValidationError as error:
        fields = [
            {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
            for e in error.errors()
        ]
        return JSONResponse(
            error_body(422, f"the {channel} settings are not valid", fields), status_code=422
        )
    config = parsed.model_dump(by_alias=True, exclude_none=True)
    async with context.engine.begin() as conn:
        await store.save_channel(conn, admin.workspace_id, channel, config)
    return _view(channel, config, _settings(request))


@router.delete("/{channel}")
async def reset_channel(
    channel: str, admin: Admin, context: Context, request: Request
) -> dict[str, Any]:
    _known(channel)
    async with context.engine.begin() as conn:
        await store.forget_channel(conn, admin.workspace_id, channel)
    return _view(channel, {}, _settings(request))
