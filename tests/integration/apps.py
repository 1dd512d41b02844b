"""Runs a service's real app (lifespan included) in-process, reached through httpx."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI

from kizuna.services import SERVICES
from kizuna.settings import KizunaSettings


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def service_app(service: str, base: KizunaSettings, **extra: Any) -> FastAPI:
    """The service's app, configured like ``base`` (plus its own ``extra`` settings) through
    the service's own settings class."""
    settings_module = importlib.import_module(f"kizuna_{service}.settings")
    settings_class = next(
        value
        for value in vars(settings_module).values()
        if isinstance(value, type)
        and issubclass(value, KizunaSettings)
        and value is not KizunaSettings
    )
    module, _, factory = SERVICES[service].app_factory.partition(":")
    app: FastAPI = getattr(importlib.import_module(module), factory)(
        settings_class(**{**base.model_dump(), **extra})
    )
    return app
