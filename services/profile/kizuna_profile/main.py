from fastapi import FastAPI

from kizuna.service import create_service_app
from kizuna_profile.settings import ProfileSettings, get_settings


def create_app(settings: ProfileSettings | None = None) -> FastAPI:
    return create_service_app("profile", settings or get_settings())
