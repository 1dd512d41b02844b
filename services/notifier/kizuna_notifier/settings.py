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

    notifier_line_api_url: str = Field(
        default="https://api.line.me", description="Base URL of the LINE Messaging API."
    )
    notifier_email_per_second: float = Field(
        default=200,
        gt=0,
        description="Emails a workspace may send per second, unless its"
        " channel settings say otherwise (PUT /v1/channels/email).",
    )
    notifier_line_per_second: float = Field(
        default=1000, gt=0, description="LINE pushes per second per workspace (LINE allows 2,000)."
    )
    notifier_webhook_per_second: float = Field(
        default=100, gt=0, description="Webhook-step posts per second per workspace."
    )
    notifier_rate_max_wait_seconds: float = Field(
        default=5,
        ge=0,
        description="Sends that would wait longer for their rate limit are"
        " parked in the sends ledger and sent when their turn comes.",
    )

    notifier_webhook_batch_size: int = Field(
        default=500, ge=1, le=10_000, description="Integration webhook deliveries per round."
    )
    notifier_webhook_connections: int = Field(
        default=100, ge=1, le=1000, description="Concurrent webhook posts per notifier process."
    )
    notifier_webhook_lease_seconds: float = Field(
        default=120,
        gt=0,
        description="A delivery taken by a process that dies is due again after this.",
    )
    notifier_webhook_disable_after_hours: float = Field(
        default=120,
        gt=0,
        description="An endpoint without a successful delivery for this long"
        " (while failing) is disabled.",
    )
    notifier_webhook_retention_days: int = Field(
        default=30,
        ge=1,
        description="Webhook messages and attempts are kept this long, for replay.",
    )


@lru_cache
def get_settings() -> NotifierSettings:
    return NotifierSettings()
