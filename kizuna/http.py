"""HTTP plumbing every service shares: uniform JSON errors, request metrics, admin auth."""

from __future__ import annotations

import time
from typing import Any

import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kizuna import metrics

log = structlog.get_logger(__name__)


def error_body(
    status: int, message: str, fields: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"status": status, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(part) for part in err["loc"]), "problem": err["msg"]}
        for err in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(exc.status_code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", error_type=type(exc).__name__)
        return JSONResponse(error_body(500, "internal error; it has been logged"), status_code=500)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            error_body(422, "the request is not valid", field_errors(exc)), status_code=422
        )


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            401,
            "missing admin key: send 'Authorization: Bearer <admin key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()


class MeasuredRoute(Route):
    """A plain Starlette route that tells MetricsMiddleware its path template."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        await super().handle(scope, receive, send)


class MetricsMiddleware:
    """Counts requests and times them by route template (not raw path, to bound cardinality)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope["method"]
            metrics.HTTP_REQUESTS.labels(self.service, method, path, str(status)).inc()
            metrics.HTTP_LATENCY.labels(self.service, method, path).observe(
                time.perf_counter() - started
            )
