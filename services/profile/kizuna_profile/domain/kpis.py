"""The calendar of a KPI series and the KPIs of each period. Pure: no I/O.

A period is a calendar day, a week starting on Monday, or a calendar month, in one IANA time
zone. The periods are turned into instants here (with zoneinfo, DST included), so the database
only compares timestamps and never has to know the zone's name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from typing import Literal
from zoneinfo import ZoneInfo, available_timezones

Interval = Literal["day", "week", "month"]
MAX_PERIODS = 1000
DEFAULT_PERIODS: dict[Interval, int] = {"day": 30, "week": 12, "month": 12}
EARLIEST = date(1900, 1, 1)  # a Monday and the first of a month: starts every interval
LATEST = date(2999, 12, 31)


class BadParameter(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones() - {"localtime"})  # localtime: the server's own


def time_zone(name: str) -> ZoneInfo:
    if name not in _zone_names():
        raise BadParameter("tz", f"unknown time zone {name!r}; use an IANA name like Asia/Tokyo")
    return ZoneInfo(name)


def period_start(day: date, interval: Interval) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def next_start(start: date, interval: Interval) -> date:
    if interval == "day":
        return start + timedelta(days=1)
    if interval == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


@dataclass(frozen=True)
class Periods:
    """``starts[i]`` names period i; it holds the instants ``bounds[i] <= t < bounds[i + 1]``."""

    starts: tuple[date, ...]
    bounds: tuple[datetime, ...]


def periods(
    interval: Interval, first: date | None, last: date | None, zone: ZoneInfo, now: datetime
) -> Periods:
    """The periods from ``first`` to ``last`` (both included, widened to whole periods).

    Without ``last``: up to today in ``zone``. Without ``first``: the default number of
    periods ending with ``last``'s."""
    for field, day in (("from", first), ("to", last)):
        if day is not None and not EARLIEST <= day <= LATEST:
            raise BadParameter(field, f"must be between {EARLIEST} and {LATEST}")
    last = last or now.astimezone(zone).date()
    if first is None:
        first = period_start(last, interval)
        for _ in range(DEFAULT_PERIODS[interval] - 1):
            if first <= EARLIEST:
                break
            first = period_start(first - timedelta(days=1), interval)
    if first > last:
        raise BadParameter("from", "must not be after to")
    starts = [period_start(first, interval)]
    while (following := next_start(starts[-1], interval)) <= last:
        if len(starts) == MAX_PERIODS:
            raise BadParameter("from", f"the range spans more than {MAX_PERIODS} {interval}s")
        starts.append(following)
    edges = [*starts, next_start(starts[-1], interval)]
    return Periods(
        starts=tuple(starts),
        bounds=tuple(datetime.combine(day, time(), zone).astimezone(UTC) for day in edges),
    )


@dataclass(frozen=True)
class Sales:
    """Completed orders placed in one period."""

    orders: int
    revenue: Decimal  # net of refunds
    buyers: int  # distinct customers who placed them
    repeaters: int  # of those, the ones with two or more orders by the period's end


@dataclass(frozen=True)
class PeriodKpis:
    start: date
    customers: int
    active_customers: int
    new_customers: int
    orders: int
    revenue: float
    average_order_value: float | None
    purchase_frequency: float | None
    repeat_purchase_rate: float | None


def kpi_series(
    starts: Sequence[date],
    customers_before: int,
    new: Mapping[int, int],
    active: Mapping[int, int],
    sales: Mapping[int, Sales],
) -> list[PeriodKpis]:
    """One entry per period; the mappings are keyed by period index and may leave gaps."""
    series, customers = [], customers_before
    for index, start in enumerate(starts):
        customers += new.get(index, 0)
        sold = sales.get(index, Sales(0, Decimal(0), 0, 0))
        series.append(
            PeriodKpis(
                start=start,
                customers=customers,
                active_customers=active.get(index, 0),
                new_customers=new.get(index, 0),
                orders=sold.orders,
                revenue=float(sold.revenue),
                average_order_value=(
                    round(float(sold.revenue / sold.orders), 2) if sold.orders else None
                ),
                purchase_frequency=round(sold.orders / sold.buyers, 4) if sold.buyers else None,
                repeat_purchase_rate=(
                    round(sold.repeaters / sold.buyers, 4) if sold.buyers else None
                ),
            )
        )
    return series
