"""The tracking API: Segment's HTTP API and analytics.js's one-letter paths."""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response

from kizuna import topics
from kizuna.bus import BusUnavailable, OutgoingMessage
from kizuna.envelope import Envelope
from kizuna.http import error_body
from kizuna_ingest import handlers, metrics
from kizuna_ingest.adapters.sources import Source
from kizuna_ingest.bodies import read_json
from kizuna_ingest.domain.calls import CALL_TYPES, SHORT_PATHS
from kizuna_ingest.domain.errors import InvalidCall, TooLarge
from kizuna_ingest.runtime import IngestRuntime

log = structlog.get_logger(__name__)
router = APIRouter(tags=["tracking"])
OK = orjson.dumps({"success": True})


class Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def basic_auth_key(request: Request) -> str | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, _ = base64.b64decode(encoded).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user or None


def cors_headers(request: Request, source: Source | None) -> dict[str, str]:
    origin = request.headers.get("origin")
    if origin is None or source is None or not source.allows_origin(origin):
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


async def authenticate(request: Request, body: Any, runtime: IngestRuntime) -> Source:
    key = basic_auth_key(request)
    if key is None and isinstance(body, dict) and isinstance(body.get("writeKey"), str):
        key = body["writeKey"]
    if not key:
        raise Refused(401, "missing write key: send it as the Basic user name or as writeKey")
    source = await runtime.sources.lookup(key)
    if source is None:
        raise Refused(401, "unknown or revoked write key")
    if not source.enabled:
        raise Refused(403, "this source is disabled; enable it in the source settings")
    if not source.allows_origin(request.headers.get("origin")):
        raise Refused(403, f"origin {request.headers.get('origin')} is not allowed for this source")
    return source


def check_rate(source: Source, runtime: IngestRuntime, count: int) -> None:
    rate = source.rate_limit_per_second or runtime.settings.ingest_rate_limit
    wait = runtime.limiter.take(source.key_id, rate, count)
    if wait > 0:
        metrics.RATE_LIMITED.inc(count)
        raise Refused(
            429, "rate limit exceeded; retry later", {"Retry-After": str(math.ceil(wait))}
        )


async def publish(runtime: IngestRuntime, envelopes: Sequence[Envelope]) -> None:
    messages = [OutgoingMessage(e.bus_key, e.to_bytes()) for e in envelopes]
    timeout = runtime.settings.bus_publish_timeout_ms / 1000
    try:
        async with asyncio.timeout(timeout):
            await runtime.bus.publish_batch(topics.RAW_EVENTS, messages)
    except (BusUnavailable, TimeoutError) as error:
        log.warning("bus_unavailable", error=str(error), events=len(messages))
        raise Refused(
            503, "events could not be stored; retry later", {"Retry-After": "5"}
        ) from error
    for envelope in envelopes:
        metrics.ACCEPTED.labels(envelope.type).inc()


async def handle(request: Request, call_type: str | None) -> Response:
    with structlog.contextvars.bound_contextvars(path=request.scope["path"], workspace_id=None):
        return await _handle(request, call_type)


async def _handle(request: Request, call_type: str | None) -> Response:
    runtime: IngestRuntime = request.app.state.ingest
    source: Source | None = None
    limit = handlers.MAX_BATCH_BYTES if call_type is None else handlers.MAX_EVENT_BYTES
    try:
        body = await read_json(request, limit)
        source = await authenticate(request, body, runtime)
        structlog.contextvars.bind_contextvars(workspace_id=source.workspace_id)
        received_at = datetime.now(UTC)
        cors = cors_headers(request, source)
        if call_type is not None:
            check_rate(source, runtime, 1)
            await handlers.accept_call(
                body,
                call_type,
                source.workspace_id,
                received_at,
                lambda e: publish(runtime, e),
            )
            return Response(OK, 200, cors, media_type="application/json")
        items = body.get("batch") if isinstance(body, dict) else None
        check_rate(source, runtime, len(items) if isinstance(items, list) else 1)
        outcome = await handlers.accept_batch(
            body, source.workspace_id, received_at, lambda e: publish(runtime, e)
        )
    except InvalidCall as error:
        metrics.REJECTED.labels("invalid").inc()
        detail = error.detail
        return json_response(
            400,
            error_body(400, f"{detail.field} {detail.problem}", [vars(detail)]),
            cors_headers(request, source),
        )
    except TooLarge as error:
        metrics.REJECTED.labels("too_large").inc()
        return json_response(413, error_body(413, str(error)), cors_headers(request, source))
    except Refused as refused:
        return json_response(
            refused.status,
            error_body(refused.status, refused.message),
            {**cors_headers(request, source), **refused.headers},
        )
    metrics.REJECTED.labels("invalid").inc(len(outcome.rejected))
    rejected = [vars(p) for p in outcome.rejected]
    if not outcome.accepted and rejected:
        return json_response(400, error_body(400, "no event in the batch is valid", rejected), cors)
    body_out: dict[str, Any] = {"success": True, "accepted": len(outcome.accepted)}
    if rejected:
        body_out["rejected"] = rejected
    return json_response(200, body_out, cors)


def _route(call_type: str | None) -> Any:
    async def endpoint(request: Request) -> Response:
        return await handle(request, call_type)

    endpoint.__name__ = f"post_{call_type or 'batch'}"
    return endpoint


TRACKING_PATHS: dict[str, str | None] = {
    **{f"/v1/{call}": call for call in sorted(CALL_TYPES)},
    **{f"/v1/{short}": call for short, call in SHORT_PATHS.items()},
    "/v1/batch": None,
    "/v1/b": None,
    "/v1/import": None,
}
DOCUMENTED = {f"/v1/{call}" for call in CALL_TYPES} | {"/v1/batch"}


# The hot paths are direct routes (kizuna.direct_routes, added in main): FastAPI's and
# Starlette's per-request machinery costs more than the handler. The documented ones are also
# registered below as FastAPI routes, only to describe them in the OpenAPI schema; requests
# never reach those, as the direct routes match first.
def route_endpoints() -> dict[str, Any]:
    return {path: _route(call) for path, call in TRACKING_PATHS.items()}


for _path in sorted(DOCUMENTED):
    router.add_api_route(
        _path,
        _route(TRACKING_PATHS[_path]),
        methods=["POST"],
        summary=f"{TRACKING_PATHS[_path] or 'batch of'} call{'s' if _path == '/v1/batch' else ''}",
        description="Segment HTTP Tracking API; see docs/ingest.md.",
    )


@router.options("/v1/{path:path}", include_in_schema=False)
async def preflight(request: Request) -> Response:
    origin = request.headers.get("origin", "*")
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type, Authorization, Content-Encoding",
            "Access-Control-Max-Age": "86400",
            "Vary": "Origin",
        },
    )
