from fastapi import FastAPI

from kizuna.service import ServiceContext, create_service_app
from kizuna_journey import api, results_api, runtime, simulate_api
from kizuna_journey.settings import JourneySettings, get_settings


def create_app(settings: JourneySettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app: FastAPI | None = None

    def current() -> runtime.Journeys:
        assert app is not None
        journeys: runtime.Journeys = app.state.journeys
        return journeys

    def start(started: FastAPI, context: ServiceContext) -> None:
        started.state.journeys = runtime.Journeys(
            context.engine,
            context.bus,
            timer_batch=settings.journey_timer_batch,
            poll_seconds=settings.journey_timer_poll_seconds,
        )

    app = create_service_app(
        "journey",
        settings,
        routers=[api.router, results_api.router, simulate_api.router],
        consumers=runtime.consumers(current),
        background=runtime.background(current),
        on_startup=[start],
        description="Journeys as data, durable timers, delivery rules, standard CRM scenarios.",
    )
    return app
