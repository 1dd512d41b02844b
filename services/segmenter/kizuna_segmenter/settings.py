from functools import lru_cache

from pydantic import Field

from kizuna.settings import KizunaSettings


class SegmenterSettings(KizunaSettings):
    """Settings of the segmenter service: every KIZUNA_* variable, plus its own."""

    segmenter_sweep_seconds: float = Field(
        default=60,
        gt=0,
        description="How often customers whose scores move with time alone are rescored.",
    )


@lru_cache
def get_settings() -> SegmenterSettings:
    return SegmenterSettings()
