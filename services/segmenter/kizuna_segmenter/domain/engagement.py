"""The engagement (lead) score: points per event, halving every ``half_life_days`` without
activity. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

DEFAULT_POINTS: dict[str, float] = {
    "Page Viewed": 1,
    "Product Viewed": 2,
    "Asset Downloaded": 10,
    "Email Opened": 2,
    "Email Link Clicked": 5,
    "Product Added": 5,
    "Checkout Started": 8,
    "Order Completed": 20,
}
DEFAULT_HALF_LIFE_DAYS = 30.0
DEFAULT_THRESHOLDS: tuple[float, ...] = (50.0,)


@dataclass(frozen=True)
class ScoreSettings:
    points: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_POINTS))
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS


def decayed(score: float, since: datetime | None, now: datetime, half_life_days: float) -> float:
    if since is None or score == 0:
        return score
    days = max((now - since).total_seconds() / 86400, 0.0)
    return score * float(0.5 ** (days / half_life_days))


def add(
    score: float,
    since: datetime | None,
    events: Sequence[tuple[str, datetime]],
    settings: ScoreSettings,
) -> tuple[float, datetime | None]:
    """The score after these events (name, time), as of the newest time seen. Events older
    than the score's time count decayed to it, so late arrivals add what they are worth now."""
    times = [at for _, at in events] + ([since] if since is not None else [])
    if not times:
        return score, since
    as_of = max(times)
    total = decayed(score, since, as_of, settings.half_life_days)
    for name, at in events:
        points = settings.points.get(name, 0.0)
        if points:
            total += decayed(points, at, as_of, settings.half_life_days)
    return total, as_of


def crossed(before: float, after: float, thresholds: Sequence[float]) -> list[float]:
    """Thresholds passed on the way up."""
    return [t for t in sorted(thresholds) if before < t <= after]
