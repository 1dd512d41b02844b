from functools import lru_cache

from kizuna.settings import KizunaSettings


class IngestSettings(KizunaSettings):
    """Settings of the ingest service: every KIZUNA_* variable, plus its own."""


@lru_cache
def get_settings() -> IngestSettings:
    return IngestSettings()
