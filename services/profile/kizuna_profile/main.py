from fastapi import FastAPI

from kizuna.service import create_service_app
from kizuna_profile import consumers, customers_api, events_api, imports_api, kpis_api, retention
from kizuna_profile.settings import ProfileSettings, get_settings


def create_app(settings: ProfileSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    return create_service_app(
        "profile",
        settings,
        routers=[
            customers_api.router,
            events_api.router,
            imports_api.router,
            kpis_api.router,
        ],
        consumers=[
            consumers.raw_events_consumer,
            consumers.segment_changes_consumer,
            consumers.delivery_outcomes_consumer,
        ],
        background=[retention.every_hour(settings)],
        description="One record per customer: identities, traits, consent, history, imports.",
    )
