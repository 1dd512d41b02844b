from functools import lru_cache

from pydantic import Field

from kizuna.settings import KizunaSettings


class IngestSettings(KizunaSettings):
    """Settings of the ingest service: every KIZUNA_* variable, plus its own."""

    ingest_rate_limit: float = Field(
        default=20_000,
        gt=0,
        description="Events/s per write key per replica, unless the source sets one.",
    )
    ingest_source_cache_seconds: float = Field(
        default=30, ge=0, description="How long write keys and source settings are cached."
    )


@lru_cache
def get_settings() -> IngestSettings:
    return IngestSettings()
