from fastapi import FastAPI

from kizuna.service import ServiceContext, create_service_app
from kizuna_segmenter import analysis_api, rfm_api, runtime, segments_api
from kizuna_segmenter.settings import SegmenterSettings, get_settings


def create_app(settings: SegmenterSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app: FastAPI | None = None

    def current() -> runtime.Segmenter:
        assert app is not None
        segmenter: runtime.Segmenter = app.state.segmenter
        return segmenter

    def start(started: FastAPI, context: ServiceContext) -> None:
        started.state.segmenter = runtime.Segmenter(context.engine, context.bus)

    app = create_service_app(
        "segmenter",
        settings,
        routers=[rfm_api.router, segments_api.router, analysis_api.router],
        consumers=runtime.consumers(current),
        background=runtime.background(current, settings.segmenter_sweep_seconds),
        on_startup=[start],
        description="Real-time RFM tiers, rule segments, decile and LTV analysis.",
    )
    return app
