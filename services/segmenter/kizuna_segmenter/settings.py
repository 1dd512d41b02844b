from functools import lru_cache

from kizuna.settings import KizunaSettings


class SegmenterSettings(KizunaSettings):
    """Settings of the segmenter service: every KIZUNA_* variable, plus its own."""


@lru_cache
def get_settings() -> SegmenterSettings:
    return SegmenterSettings()
