from fastapi import FastAPI

from kizuna import workspace_api
from kizuna.service import create_service_app
from kizuna_ingest.settings import IngestSettings, get_settings


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    return create_service_app(
        "ingest",
        settings or get_settings(),
        routers=[workspace_api.router],
        description="Tracking API (Segment-compatible) and workspace keys.",
    )
