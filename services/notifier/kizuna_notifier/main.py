from fastapi import FastAPI

from kizuna.outbox import Outbox
from kizuna.service import ServiceContext, create_service_app
from kizuna_notifier import (
    channels_api,
    endpoints_api,
    mailbox_api,
    runtime,
    templates_api,
    unsubscribe,
)
from kizuna_notifier.adapters.mail import MailboxMailer, Mailer, SmtpMailer
from kizuna_notifier.adapters.webhooks import WebhookPoster, parse_networks
from kizuna_notifier.delivery import Delivery
from kizuna_notifier.integrations import Dispatcher
from kizuna_notifier.settings import NotifierSettings, get_settings


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app: FastAPI | None = None

    def current() -> Delivery:
        assert app is not None
        delivery: Delivery = app.state.delivery
        return delivery

    def dispatcher() -> Dispatcher:
        assert app is not None
        found: Dispatcher = app.state.dispatcher
        return found

    def start(started: FastAPI, context: ServiceContext) -> None:
        mailer: Mailer = MailboxMailer(context.engine)
        if settings.notifier_smtp_url is not None:
            mailer = SmtpMailer(
                settings.notifier_smtp_url.get_secret_value(), settings.notifier_smtp_connections
            )
        poster = WebhookPoster(
            parse_networks(settings.notifier_webhook_allowed_networks),
            connections=settings.notifier_webhook_connections,
        )
        started.state.delivery = Delivery(
            context.engine,
            context.bus,
            mailer,
            settings,
            Outbox("nt_outbox", runtime.OUTBOX_LOCK),
            poster,
        )
        started.state.dispatcher = Dispatcher(context.engine, poster, settings)

    async def stop(stopped: FastAPI) -> None:
        delivery: Delivery = stopped.state.delivery
        await delivery.close()

    app = create_service_app(
        "notifier",
        settings,
        routers=[
            templates_api.router,
            channels_api.router,
            endpoints_api.router,
            endpoints_api.event_types,
            mailbox_api.router,
            mailbox_api.secrets,
            unsubscribe.router,
        ],
        consumers=runtime.consumers(current, dispatcher),
        background=runtime.background(current, dispatcher),
        on_startup=[start],
        on_shutdown=[stop],
        description="Templates and delivery by email, LINE and webhook.",
    )
    return app
