"""A direct route skips the middleware stack but keeps what it gives: NUL refusal, uniform
JSON errors and request metrics; other methods and mounted apps still go through the stack."""

from __future__ import annotations

import httpx
import pytest
from fastapi import HTTPException
from prometheus_client import REGISTRY
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kizuna.direct_routes import ServiceApp
from kizuna.http import MetricsMiddleware, RefuseNulMiddleware, install_error_handlers

SERVICE = "direct-test"


async def echo(request: Request) -> Response:
    body = await request.body()
    if body == b"boom":
        raise RuntimeError("the handler failed")
    if body == b"refuse":
        raise HTTPException(409, "already there")
    return JSONResponse({"path": request.scope["path"], "length": len(body)})


def make_app() -> ServiceApp:
    app = ServiceApp(SERVICE)
    app.add_middleware(RefuseNulMiddleware)
    app.add_middleware(MetricsMiddleware, service=SERVICE)
    install_error_handlers(app)
    app.add_direct_route("/v1/echo", echo, "POST")
    return app


def served(method: str, status: int) -> float:
    labels = {"service": SERVICE, "method": method, "route": "/v1/echo", "status": str(status)}
    return REGISTRY.get_sample_value("kizuna_http_requests_total", labels) or 0.0


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = make_app()
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_direct_route_answers_and_is_counted(client: httpx.AsyncClient) -> None:
    before = served("POST", 200)
    response = await client.post("/v1/echo", content=b"hello")
    assert response.status_code == 200
    assert response.json() == {"path": "/v1/echo", "length": 5}
    assert served("POST", 200) == before + 1


async def test_unexpected_error_is_uniform_json_500(client: httpx.AsyncClient) -> None:
    before = served("POST", 500)
    response = await client.post("/v1/echo", content=b"boom")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"status": 500, "message": "internal error; it has been logged"}
    }
    assert served("POST", 500) == before + 1


async def test_http_exception_keeps_its_status(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/echo", content=b"refuse")
    assert response.status_code == 409
    assert response.json() == {"error": {"status": 409, "message": "already there"}}


async def test_nul_in_query_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/echo?x=a%00b", content=b"hello")
    assert response.status_code == 422
    assert response.json()["error"]["fields"] == [
        {"field": "query.x", "problem": "must not contain a NUL character"}
    ]


async def test_other_methods_go_through_the_stack(client: httpx.AsyncClient) -> None:
    before = served("GET", 405)
    response = await client.get("/v1/echo")
    assert response.status_code == 405
    assert response.json()["error"]["status"] == 405
    assert served("GET", 405) == before + 1


async def test_under_a_root_path_the_ordinary_route_serves_it() -> None:
    app = make_app()
    transport = httpx.ASGITransport(app=app, root_path="/kizuna")
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/kizuna/v1/echo", content=b"hi")
    assert response.status_code == 200
    assert response.json()["length"] == 2


async def test_the_middleware_stack_is_skipped() -> None:
    app = make_app()
    through_stack: list[str] = []

    @app.middleware("http")
    async def note(request: Request, call_next: object) -> Response:
        through_stack.append(request.url.path)
        return await call_next(request)  # type: ignore[operator,no-any-return]

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        assert (await client.post("/v1/echo", content=b"x")).status_code == 200
        assert (await client.get("/v1/echo")).status_code == 405
    assert through_stack == ["/v1/echo"]  # only the GET
