from functools import lru_cache

from pydantic import Field

from kizuna.settings import KizunaSettings


class JourneySettings(KizunaSettings):
    """Settings of the journey service: every KIZUNA_* variable, plus its own."""

    journey_timer_batch: int = Field(
        default=1000, ge=1, le=20_000, description="Most due runs one transaction fires."
    )
    journey_notifier_url: str = Field(
        default="http://127.0.0.1:8005",
        description="The notifier, asked whether the templates a journey names exist.",
    )
    journey_profile_url: str = Field(
        default="http://127.0.0.1:8002",
        description="The profile service, whose stored events a simulation replays.",
    )
    journey_simulation_max_events: int = Field(
        default=500_000, ge=1, description="Most stored events one simulation replays."
    )
    journey_timer_poll_seconds: float = Field(
        default=0.2, gt=0, le=60, description="How often an idle replica looks for due timers."
    )


@lru_cache
def get_settings() -> JourneySettings:
    return JourneySettings()
