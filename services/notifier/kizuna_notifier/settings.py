from functools import lru_cache

from kizuna.settings import KizunaSettings


class NotifierSettings(KizunaSettings):
    """Settings of the notifier service: every KIZUNA_* variable, plus its own."""


@lru_cache
def get_settings() -> NotifierSettings:
    return NotifierSettings()
