"""Delivery rules: the workspace's settings with a journey's overrides, and the frequency
budget of one customer. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from kizuna_journey.domain.definition import DeliveryRules
from kizuna_journey.domain.durations import parse_duration, parse_time_of_day

DEFAULT_SPREAD = timedelta(minutes=5)


@dataclass(frozen=True)
class Delivery:
    quiet_hours: tuple[time, time] | None = None
    caps: tuple[tuple[int, timedelta], ...] = ()
    default_timezone: str = "UTC"
    spread: timedelta = DEFAULT_SPREAD

    @property
    def longest_cap(self) -> timedelta:
        return max((per for _, per in self.caps), default=timedelta(0))


def resolve(workspace: DeliveryRules | None, journey: DeliveryRules | None) -> Delivery:
    """A journey's field wins where it is set; otherwise the workspace's; otherwise none."""
    empty = DeliveryRules()

    def source(name: str) -> DeliveryRules:
        if journey is not None and name in journey.model_fields_set:
            return journey
        return workspace or empty

    quiet = source("quiet_hours").quiet_hours
    spread = source("spread").spread
    return Delivery(
        quiet_hours=(
            (parse_time_of_day(quiet.start), parse_time_of_day(quiet.end)) if quiet else None
        ),
        caps=tuple(
            (cap.max, parse_duration(cap.per))
            for cap in source("frequency_caps").frequency_caps or []
        ),
        default_timezone=source("default_timezone").default_timezone or "UTC",
        spread=parse_duration(spread) if spread else DEFAULT_SPREAD,
    )


@dataclass
class Budget:
    """The marketing messages one customer got recently, across all journeys."""

    sent_at: list[datetime] = field(default_factory=list)

    def allows(self, caps: tuple[tuple[int, timedelta], ...], now: datetime) -> bool:
        return all(sum(1 for at in self.sent_at if at > now - per) < most for most, per in caps)

    def spend(self, now: datetime) -> None:
        self.sent_at.append(now)
