from fastapi import FastAPI

from kizuna import workspace_api
from kizuna.service import ServiceContext, create_service_app
from kizuna_ingest import api, sources_api, tracking
from kizuna_ingest.adapters.sources import SourceDirectory
from kizuna_ingest.runtime import IngestRuntime
from kizuna_ingest.settings import IngestSettings, get_settings


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    def start(app: FastAPI, context: ServiceContext) -> None:
        directory = SourceDirectory(context.engine, settings.ingest_source_cache_seconds)
        app.state.ingest = IngestRuntime(settings, context.bus, directory)

    app = create_service_app(
        "ingest",
        settings,
        routers=[api.router, tracking.router, sources_api.router, workspace_api.router],
        on_startup=[start],
        description="Segment-compatible tracking API, tracked links, sources and workspace keys.",
    )
    for path, endpoint in api.route_endpoints().items():
        app.add_direct_route(path, endpoint, "POST")
    return app
