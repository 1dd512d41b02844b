from fastapi import FastAPI

from kizuna.service import create_service_app
from kizuna_segmenter.settings import SegmenterSettings, get_settings


def create_app(settings: SegmenterSettings | None = None) -> FastAPI:
    return create_service_app("segmenter", settings or get_settings())
