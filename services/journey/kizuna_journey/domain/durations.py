"""ISO 8601 durations of fixed length (weeks, days, hours, minutes, seconds) and times of day.

Months and years are refused: "P1M" is 28 to 31 days, and a timer must know when it is due."""

from __future__ import annotations

import re
from datetime import time, timedelta

_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_TIME_OF_DAY = re.compile(r"^(?P<hour>[01]\d|2[0-3]):(?P<minute>[0-5]\d)$")
LONGEST = timedelta(days=3660)


class InvalidDuration(ValueError):
    pass


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None or text in ("P", "PT") or text.endswith("T"):
        if isinstance(text, str) and re.match(r"^P(\d+Y|\d+M)", text):
            raise InvalidDuration(
                f"{text!r}: months and years have no fixed length; use days (P30D, P365D)"
            )
        raise InvalidDuration(f"{text!r} is not an ISO 8601 duration such as PT1H, P1D or P7D")
    parts = {name: float(value) for name, value in match.groupdict().items() if value}
    try:
        duration = timedelta(**parts)
    except OverflowError:
        duration = timedelta.max
    if duration > LONGEST:
        raise InvalidDuration(f"{text!r} is longer than ten years")
    return duration


def parse_time_of_day(text: str) -> time:
    match = _TIME_OF_DAY.match(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidDuration(f"{text!r} is not a time of day HH:MM (24-hour)")
    return time(int(match["hour"]), int(match["minute"]))
