"""Times in the customer's timezone: quiet hours, the next HH:MM, the next birthday, spreading.
Pure."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: object, fallback: str = "UTC") -> ZoneInfo:
    for candidate in (name, fallback):
        if isinstance(candidate, str) and candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def at_local(day: date, at: time, tz: ZoneInfo) -> datetime:
    """``day`` at ``at`` wall-clock time in ``tz``, as UTC. A time skipped by a DST jump
    falls forward; a repeated one takes its first occurrence."""
    local = datetime.combine(day, at, tzinfo=tz)
    as_utc = local.astimezone(UTC)
    if as_utc.astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
        as_utc = (local + timedelta(hours=1)).astimezone(UTC)
    return as_utc


def next_time_of_day(now: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The first instant after ``now`` when the clock in ``tz`` shows ``at``."""
    today = now.astimezone(tz).date()
    for offset in range(3):
        candidate = at_local(today + timedelta(days=offset), at, tz)
        if candidate > now:
            return candidate
    return at_local(today + timedelta(days=3), at, tz)


def quiet_until(now: datetime, start: time, end: time, tz: ZoneInfo) -> datetime | None:
    """If ``now`` falls in the quiet window [start, end) in ``tz``, the window's end; else None.
    A window with start > end spans midnight (21:00 to 09:00)."""
    local = now.astimezone(tz).time().replace(tzinfo=None)
    if start == end:
        return None
    inside = start <= local < end if start < end else (local >= start or local < end)
    return next_time_of_day(now, end, tz) if inside else None


def _birthday_in(year: int, birthday: date) -> date:
    try:
        return birthday.replace(year=year)
    except ValueError:  # 29 February outside a leap year: the 28th
        return date(year, 2, 28)


def next_anniversary(
    now: datetime, birthday: date, at: time, tz: ZoneInfo, offset_days: int = 0
) -> datetime:
    """The next time after ``now`` that is ``offset_days`` from the anniversary of
    ``birthday``, at ``at`` local time."""
    this_year = now.astimezone(tz).year
    for year in (this_year - 1, this_year, this_year + 1, this_year + 2):
        day = _birthday_in(year, birthday) + timedelta(days=offset_days)
        due = at_local(day, at, tz)
        if due > now:
            return due
    raise ValueError("no anniversary within two years")  # unreachable for |offset| ≤ 365


def parse_date(value: object) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def spread_offset(key: str, spread: timedelta) -> timedelta:
    """A stable offset in [0, spread) for ``key``: mass triggers leave in a steady stream."""
    if spread <= timedelta(0):
        return timedelta(0)
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return timedelta(microseconds=digest % int(spread.total_seconds() * 1_000_000))


def bucket(key: str) -> float:
    """A stable number in [0, 100) for ``key`` (holdout groups, splits)."""
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return (digest % 1_000_000) / 10_000
