from functools import lru_cache

from pydantic import Field

from kizuna.settings import KizunaSettings


class ProfileSettings(KizunaSettings):
    """Settings of the profile service: every KIZUNA_* variable, plus its own."""

    consumer_batch_size: int = Field(
        default=3_000,
        ge=1,
        description="Most messages one of the service's consumers takes at a time. The raw-event"
        " consumer's PostgreSQL work per event falls with bigger batches up to a few thousand"
        " (docs/benchmarks.md); under light load batches are small anyway.",
    )
    profile_event_retention_days: float = Field(
        default=730, gt=0, description="How long each customer's event history is kept."
    )
    profile_import_max_bytes: int = Field(
        default=200 * 1024 * 1024, gt=0, description="Largest file POST /v1/imports accepts."
    )


@lru_cache
def get_settings() -> ProfileSettings:
    return ProfileSettings()
