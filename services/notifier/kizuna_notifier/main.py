from fastapi import FastAPI

from kizuna.service import create_service_app
from kizuna_notifier import templates_api
from kizuna_notifier.settings import NotifierSettings, get_settings


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    return create_service_app(
        "notifier",
        settings or get_settings(),
        routers=[templates_api.router],
        description="Templates and delivery by email, LINE and webhook.",
    )
