from fastapi import FastAPI

from kizuna.service import create_service_app
from kizuna_journey.settings import JourneySettings, get_settings


def create_app(settings: JourneySettings | None = None) -> FastAPI:
    return create_service_app("journey", settings or get_settings())
