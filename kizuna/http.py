"""HTTP plumbing every service shares: uniform JSON errors, request metrics, admin auth."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
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


def http_error_response(exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(
        error_body(exc.status_code, str(exc.detail)),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def unexpected_error_response(exc: Exception) -> JSONResponse:
    problem = data_problem(exc)
    if problem is not None:  # PostgreSQL refused a value the request carried
        return JSONResponse(
            error_body(422, f"a value in the request cannot be stored: {problem}"),
            status_code=422,
        )
    if database_unreachable(exc):
        log.warning("database_unreachable", error=str(exc)[:300])
        return JSONResponse(
            error_body(503, "the database cannot be reached; retry later"),
            status_code=503,
            headers={"Retry-After": "5"},
        )
    log.exception("unhandled_error", error_type=type(exc).__name__)
    return JSONResponse(error_body(500, "internal error; it has been logged"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return http_error_response(exc)

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        return unexpected_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            error_body(422, "the request is not valid", field_errors(exc)), status_code=422
        )


def data_problem(exc: BaseException) -> str | None:
    """PostgreSQL's reason when ``exc`` is a data exception (SQLSTATE class 22: a number out
    of range, a NUL character, text that is not a valid date…), else None."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return None
        state = getattr(seen, "sqlstate", None)
        if isinstance(state, str) and state.startswith("22"):
            return str(seen).splitlines()[0][:300]
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


_UNREACHABLE = (
    OSError,
    PoolTimeout,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


def database_unreachable(exc: BaseException) -> bool:
    """The server went away, is restarting, or no connection was free: the request may be
    retried as it is."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, _UNREACHABLE):
            return True
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


class RefuseNulMiddleware:
    """A NUL character in the path or a query parameter is refused with 422 naming where it
    was: PostgreSQL cannot store one, and no identifier of ours contains one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = nul_refusal(scope) if scope["type"] == "http" else None
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


def nul_refusal(scope: Scope) -> JSONResponse | None:
    field = _nul_in(scope)
    if field is None:
        return None
    return JSONResponse(
        error_body(
            422,
            "the request is not valid",
            [{"field": field, "problem": "must not contain a NUL character"}],
        ),
        status_code=422,
    )


def _nul_in(scope: Scope) -> str | None:
    if "\x00" in scope.get("path", ""):
        return "path"
    query = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                return f"query.{name.replace(chr(0), '')}"
        return "query"
    return None


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
            path = getattr(scope.get("route"), "path", "unmatched")
            record_request(self.service, scope["method"], path, status, started)


def record_request(service: str, method: str, path: str, status: int, started: float) -> None:
    metrics.HTTP_REQUESTS.labels(service, method, path, str(status)).inc()
    metrics.HTTP_LATENCY.labels(service, method, path).observe(time.perf_counter() - started)
