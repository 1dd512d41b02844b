"""Direct routes: a service's hottest endpoints answered without the middleware stack.

A request to ingest's tracking API costs more CPU in Starlette's and FastAPI's middlewares,
route matching and send wrappers than in the handler itself. A direct route is looked up by
method and exact path before any of that and gets what those layers give every other route:
the NUL refusal, the uniform JSON errors and the request metrics. The same endpoint is also
registered as an ordinary route, which serves it when the app is mounted under a root path."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from kizuna.http import (
    MeasuredRoute,
    http_error_response,
    nul_refusal,
    record_request,
    unexpected_error_response,
)

Endpoint = Callable[[Request], Awaitable[Response]]


class ServiceApp(FastAPI):
    def __init__(self, service: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.direct_routes: dict[tuple[str, str], Endpoint] = {}

    def add_direct_route(self, path: str, endpoint: Endpoint, method: str) -> None:
        self.direct_routes[(method, path)] = endpoint
        self.router.routes.insert(0, MeasuredRoute(path, endpoint, methods=[method]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            endpoint = self.direct_routes.get((scope["method"], scope["path"]))
            if endpoint is not None:
                scope["app"] = self
                await self._serve(endpoint, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _serve(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        response = nul_refusal(scope) or await _answer(endpoint, Request(scope, receive, send))
        try:
            await response(scope, receive, send)
        finally:
            path, status = scope["path"], response.status_code
            record_request(self.service, scope["method"], path, status, started)


async def _answer(endpoint: Endpoint, request: Request) -> Response:
    try:
        return await endpoint(request)
    except StarletteHTTPException as exc:
        return http_error_response(exc)
    except Exception as exc:
        return unexpected_error_response(exc)
