from functools import lru_cache

from kizuna.settings import KizunaSettings


class JourneySettings(KizunaSettings):
    """Settings of the journey service: every KIZUNA_* variable, plus its own."""


@lru_cache
def get_settings() -> JourneySettings:
    return JourneySettings()
