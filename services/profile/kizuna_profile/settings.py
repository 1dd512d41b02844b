from functools import lru_cache

from kizuna.settings import KizunaSettings


class ProfileSettings(KizunaSettings):
    """Settings of the profile service: every KIZUNA_* variable, plus its own."""


@lru_cache
def get_settings() -> ProfileSettings:
    return ProfileSettings()
