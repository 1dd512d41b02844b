"""Builds a service's FastAPI app: lifespan (database, bus, consumers), health, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
import structlog
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna import auth, topics
from kizuna.bus import Bus, ConsumerRunner
from kizuna.bus.factory import bus_from_settings
from kizuna.bus.runner import Decoder, Handler
from kizuna.db import create_engine
from kizuna.direct_routes import ServiceApp
from kizuna.http import (
    MetricsMiddleware,
    RefuseNulMiddleware,
    bearer_token,
    install_error_handlers,
)
from kizuna.logs import configure_logging
from kizuna.settings import KizunaSettings

log = structlog.get_logger(__name__)
T = TypeVar("T")


@dataclass
class ServiceContext:
    name: str
    settings: KizunaSettings
    engine: AsyncEngine
    bus: Bus
    runners: list[ConsumerRunner[Any]] = field(default_factory=list)


ConsumerFactory = Callable[[ServiceContext], ConsumerRunner[Any]]
BackgroundTask = Callable[[ServiceContext], Coroutine[Any, Any, None]]


def consumer_runner(
    context: ServiceContext,
    group: str,
    topic_names: Sequence[str],
    decode: Decoder[T],
    handle: Handler[T],
) -> ConsumerRunner[T]:
    """A runner for one of the service's consumer groups, configured from its settings."""
    return ConsumerRunner(
        context.bus,
        group,
        topic_names,
        decode,
        handle,
        batch_size=context.settings.consumer_batch_size,
    )


def get_context(request: Request) -> ServiceContext:
    context: ServiceContext = request.app.state.context
    return context


async def require_admin(
    request: Request, context: Annotated[ServiceContext, Depends(get_context)]
) -> auth.Principal:
    token = bearer_token(request)
    async with context.engine.connect() as conn:
        principal = await auth.authenticate(conn, token, "admin")
    if principal is None:
        raise HTTPException(401, "unknown or revoked admin key")
    structlog.contextvars.bind_contextvars(workspace_id=principal.workspace_id)
    return principal


def health_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @router.get("/readyz")
    async def readyz(context: Annotated[ServiceContext, Depends(get_context)]) -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            async with context.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as error:
            checks["database"] = f"failed: {type(error).__name__}"
        try:
            async with asyncio.timeout(5):
                await context.bus.ping()
            checks["bus"] = "ok"
        except Exception as error:
            checks["bus"] = f"failed: {type(error).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


RETENTION_INTERVAL_SECONDS = 600
SHUTDOWN_SECONDS = 10
GC_THRESHOLDS = (20_000, 20, 20)  # youngest, middle, oldest; CPython starts at (700, 10, 10)


async def enforce_retention_forever(bus: Bus) -> None:
    while True:
        try:
            deleted = await bus.enforce_retention()
            if deleted:
                log.info("bus_retention_enforced", deleted=deleted)
        except Exception:
            log.exception("bus_retention_failed")
        await asyncio.sleep(RETENTION_INTERVAL_SECONDS)


def create_service_app(
    name: str,
    settings: KizunaSettings,
    *,
    routers: Sequence[APIRouter] = (),
    consumers: Sequence[ConsumerFactory] = (),
    on_startup: Sequence[Callable[[FastAPI, ServiceContext], None]] = (),
    on_shutdown: Sequence[Callable[[FastAPI], Awaitable[None]]] = (),
    background: Sequence[BackgroundTask] = (),
    description: str = "",
) -> ServiceApp:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(name, settings.log_level, settings.log_format)
        engine = create_engine(settings.database_dsn())
        bus = bus_from_settings(settings)
        await bus.start()
        await bus.ensure_topics(topics.ALL_TOPICS)
        context = ServiceContext(name, settings, engine, bus)
        app.state.context = context
        for hook in on_startup:
            hook(app, context)
        # Everything loaded so far lives as long as the process: without this, every full
        # collection walks it again, a quarter of a busy consumer's time.
        gc.collect()
        gc.freeze()
        # A consumer allocates a batch's worth of short-lived objects at a time; collecting
        # the youngest generation every 700 allocations walks most of them before they die.
        gc.set_threshold(*GC_THRESHOLDS)
        for make_runner in consumers:
            runner = make_runner(context)
            runner.start()
            context.runners.append(runner)
        tasks = [asyncio.create_task(enforce_retention_forever(bus))]
        tasks.extend(asyncio.create_task(run(context)) for run in background)
        log.info("service_started", consumers=len(context.runners))
        try:
            yield
        finally:
            log.info("service_stopping")
            for task in tasks:
                task.cancel()
            _, stuck = await asyncio.wait(tasks, timeout=SHUTDOWN_SECONDS)
            if stuck:
                log.error("background_tasks_did_not_stop", tasks=len(stuck))
            await asyncio.gather(*(runner.stop() for runner in context.runners))
            for close in on_shutdown:
                try:
                    await close(app)
                except Exception:
                    log.exception("shutdown_hook_failed")
            await bus.close()
            await engine.dispose()

    app = ServiceApp(
        name,
        title=f"Kizuna {name}",
        description=description,
        version="0.1.0",
        lifespan=lifespan,
    )
    app.add_middleware(RefuseNulMiddleware)
    app.add_middleware(MetricsMiddleware, service=name)
    install_error_handlers(app)
    app.include_router(health_router())
    for router in routers:
        app.include_router(router)
    return app
