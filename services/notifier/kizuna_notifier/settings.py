from functools import lru_cache

from pydantic import Field

from kizuna.settings import KizunaSettings


class NotifierSettings(KizunaSettings):
    """Settings of the notifier service: every KIZUNA_* variable, plus its own."""

    notifier_profile_url: str = Field(
        default="http://127.0.0.1:8002", description="The profile service, for previews."
    )


@lru_cache
def get_settings() -> NotifierSettings:
    return NotifierSettings()
