"""Mail-open pixels, tracked links and tracked downloads, driven by signed tokens."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from kizuna import tracking_tokens
from kizuna.envelope import Envelope
from kizuna.http import error_body
from kizuna.tracking_tokens import ExpiredToken, InvalidToken, TokenKind, TrackingToken
from kizuna_ingest import metrics
from kizuna_ingest.api import Refused, json_response, publish
from kizuna_ingest.domain.machine import suspect_machine
from kizuna_ingest.runtime import IngestRuntime

router = APIRouter(tags=["tracking links"])
log = structlog.get_logger(__name__)

PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}
EVENT_NAMES: dict[TokenKind, str] = {
    "open": "Email Opened",
    "click": "Email Link Clicked",
    "download": "Asset Downloaded",
}


def tracking_event(token: TrackingToken, request: Request, machine_reason: str | None) -> Envelope:
    now = datetime.now(UTC)
    properties: dict[str, Any] = {
        "message_id": token.message_id,
        "machine_suspected": machine_reason is not None,
    }
    if machine_reason:
        properties["machine_reason"] = machine_reason
    if token.kind != "open":
        properties["url"] = token.destination
    if token.kind == "download":
        properties.update({f"asset_{k}": v for k, v in token.asset.items()})
    payload = {
        "type": "track",
        "event": EVENT_NAMES[token.kind],
        "customerId": token.customer_id,
        "properties": properties,
        "context": {
            "userAgent": request.headers.get("user-agent", ""),
            "ip": request.client.host if request.client else None,
        },
        "timestamp": now.isoformat(),
        "receivedAt": now.isoformat(),
    }
    return Envelope(
        id=f"kz-{uuid.uuid4()}",
        type="track",
        workspace_id=token.workspace_id,
        customer_key=token.customer_id,
        occurred_at=now,
        received_at=now,
        payload=payload,
    )


async def record(request: Request, text: str, kind: TokenKind) -> TrackingToken | Response:
    runtime: IngestRuntime = request.app.state.ingest
    secret = runtime.settings.secret_key.get_secret_value()
    try:
        token = tracking_tokens.verify(text, kind, secret)
    except InvalidToken:
        return json_response(400, error_body(400, "invalid tracking token"), NO_CACHE)
    except ExpiredToken:
        return json_response(404, error_body(404, "this link has expired"), NO_CACHE)
    reason = suspect_machine(
        request.headers.get("user-agent", ""), token.delivered_at, time.time(), kind
    )
    metrics.TRACKED.labels(kind, str(reason is not None).lower()).inc()
    try:
        await publish(runtime, [tracking_event(token, request, reason)])
    except Exception:
        if kind == "open":
            raise
        # The person gets where the link goes even if the click cannot be recorded.
        log.exception("tracking_hit_not_stored", kind=kind)
        metrics.TRACKING_NOT_STORED.labels(kind).inc()
    return token


def _refused(refused: Refused) -> Response:
    return json_response(
        refused.status, error_body(refused.status, refused.message), {**NO_CACHE, **refused.headers}
    )


@router.get("/t/o/{token}.gif", summary="mail-open pixel")
async def open_pixel(token: str, request: Request) -> Response:
    try:
        result = await record(request, token, "open")
    except Refused as refused:
        return _refused(refused)
    if isinstance(result, Response):
        return result
    return Response(PIXEL, 200, NO_CACHE, media_type="image/gif")


async def _redirect(token: str, request: Request, kind: TokenKind) -> Response:
    result = await record(request, token, kind)
    if isinstance(result, Response):
        return result
    assert result.destination is not None  # verify() guarantees it for click and download
    return RedirectResponse(result.destination, 302, NO_CACHE)


@router.get("/t/c/{token}", summary="tracked link")
async def click(token: str, request: Request) -> Response:
    return await _redirect(token, request, "click")


@router.get("/t/d/{token}", summary="tracked download")
async def download(token: str, request: Request) -> Response:
    return await _redirect(token, request, "download")
