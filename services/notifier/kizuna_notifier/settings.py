from functools import lru_cache

from pydantic import Field, SecretStr

from kizuna.settings import KizunaSettings


class NotifierSettings(KizunaSettings):
    """Settings of the notifier service: every KIZUNA_* variable, plus its own."""

    notifier_profile_url: str = Field(
        default="http://127.0.0.1:8002", description="The profile service, for previews."
    )
    notifier_smtp_url: SecretStr | None = Field(
        default=None,
        description="smtp://user:pass@host:587 (STARTTLS when offered), smtps://… (TLS), or"
        " unset: mail goes to the local mailbox (GET /v1/mailbox)",
    )
    notifier_from: str = Field(
        default="Kizuna <no-reply@kizuna.localhost>", description="Sender of every email."
    )
    notifier_tracking_url: str = Field(
        default="http://127.0.0.1:8001", description="Public URL of ingest (tracked links)."
    )
    notifier_public_url: str = Field(
        default="http://127.0.0.1:8005", description="Public URL of the notifier (unsubscribe)."
    )
    notifier_webhook_allowed_networks: str = Field(
        default="",
        description="Comma-separated CIDRs a webhook may reach although private or loopback"
        " (make dev: 127.0.0.0/8,::1/128)",
    )
    notifier_smtp_connections: int = Field(default=4, ge=1, le=64)
    notifier_retry_seconds: float = Field(
        default=60, gt=0, description="First wait before a 4xx-refused mail is tried again."
    )


@lru_cache
def get_settings() -> NotifierSettings:
    return NotifierSettings()
