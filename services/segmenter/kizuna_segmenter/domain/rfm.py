"""RFM scores and tiers. Pure: no I/O.

Scores 1 to 5 come from the quintile boundaries of the workspace's own buyers: four cut points
per dimension (the 20th, 40th, 60th and 80th percentiles). A value exactly on a cut point gets
the lower score for frequency and monetary, the better score for recency, so ties never
promote a customer. Where the cut points coincide (many equal values: most buyers bought once),
equal values share one score. With fewer than ``MIN_BUYERS`` buyers percentiles mean nothing:
recency and frequency use fixed thresholds and monetary is 3 for everyone."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

MIN_BUYERS = 5
QUINTILES = (0.2, 0.4, 0.6, 0.8)
DEFAULT_RECENCY_DAYS = (30.0, 90.0, 180.0, 365.0)  # fewer than MIN_BUYERS buyers
DEFAULT_FREQUENCY = (1.0, 2.0, 3.0, 5.0)
NEUTRAL = 3


@dataclass(frozen=True)
class Bounds:
    """Four ascending cut points per dimension; None when the base is too small."""

    recency_days: tuple[float, ...] | None = None
    frequency: tuple[float, ...] | None = None
    monetary: tuple[float, ...] | None = None
    buyers: int = 0

    @property
    def fixed(self) -> bool:
        return self.buyers < MIN_BUYERS or self.recency_days is None


@dataclass(frozen=True)
class Facts:
    last_order_at: datetime | None
    frequency: int  # orders in the window
    monetary: float  # net revenue in the window


@dataclass(frozen=True)
class Scores:
    recency: int
    frequency: int
    monetary: int

    def as_dict(self) -> dict[str, int]:
        return {"recency": self.recency, "frequency": self.frequency, "monetary": self.monetary}


def _above(value: float, cuts: Sequence[float]) -> int:
    """How many cut points the value is strictly above."""
    return bisect.bisect_left(list(cuts), value)


def recency_days(last_order_at: datetime, now: datetime) -> float:
    return max((now - last_order_at).total_seconds() / 86400, 0.0)


def score(facts: Facts, bounds: Bounds, now: datetime) -> Scores | None:
    """None for a customer who has never ordered: RFM says nothing about them."""
    if facts.last_order_at is None:
        return None
    days = recency_days(facts.last_order_at, now)
    if bounds.fixed:
        return Scores(
            recency=5 - _above(days, DEFAULT_RECENCY_DAYS),
            frequency=1 + _above(facts.frequency, DEFAULT_FREQUENCY),
            monetary=NEUTRAL,
        )
    assert bounds.recency_days is not None
    assert bounds.frequency is not None
    assert bounds.monetary is not None
    return Scores(
        recency=5 - _above(days, bounds.recency_days),
        frequency=1 + _above(facts.frequency, bounds.frequency),
        monetary=1 + _above(facts.monetary, bounds.monetary),
    )


def next_recency_change(last_order_at: datetime, bounds: Bounds, now: datetime) -> datetime | None:
    """When this customer's recency score next drops if they buy nothing: the sweep looks at
    exactly the customers whose time has come."""
    cuts = DEFAULT_RECENCY_DAYS if bounds.fixed else bounds.recency_days or ()
    days = recency_days(last_order_at, now)
    for cut in cuts:
        if cut >= days:
            return last_order_at + timedelta(days=cut, microseconds=1)
    return None


@dataclass(frozen=True)
class TierRule:
    id: str
    name: str
    recency: tuple[int, int]  # inclusive score range
    frequency: tuple[int, int]

    def matches(self, scores: Scores) -> bool:
        return (
            self.recency[0] <= scores.recency <= self.recency[1]
            and self.frequency[0] <= scores.frequency <= self.frequency[1]
        )


# The widely used R-by-F map; the first rule that matches names the tier.
DEFAULT_TIERS: tuple[TierRule, ...] = (
    TierRule("champions", "Champions", (5, 5), (4, 5)),
    TierRule("loyal", "Loyal", (3, 4), (4, 5)),
    TierRule("potential_loyalist", "Potential Loyalist", (4, 5), (2, 3)),
    TierRule("new", "New", (5, 5), (1, 1)),
    TierRule("promising", "Promising", (4, 4), (1, 1)),
    TierRule("need_attention", "Need Attention", (3, 3), (3, 3)),
    TierRule("about_to_sleep", "About to Sleep", (3, 3), (1, 2)),
    TierRule("cant_lose", "Can't Lose Them", (1, 2), (5, 5)),
    TierRule("at_risk", "At Risk", (1, 2), (3, 4)),
    TierRule("lost", "Lost", (1, 1), (1, 1)),
    TierRule("hibernating", "Hibernating", (1, 2), (1, 2)),
)


def tier_of(scores: Scores | None, rules: Sequence[TierRule] = DEFAULT_TIERS) -> TierRule | None:
    if scores is None:
        return None
    return next((rule for rule in rules if rule.matches(scores)), None)


def check_rules(rules: Sequence[TierRule]) -> str | None:
    """Why a workspace's tier rules are unusable, or None: every R-by-F cell must get a tier."""
    ids = [rule.id for rule in rules]
    if len(set(ids)) != len(ids):
        return "tier ids must be unique"
    for rule in rules:
        for low, high in (rule.recency, rule.frequency):
            if not 1 <= low <= high <= 5:
                return f"tier {rule.id}: score ranges must lie within 1..5, low ≤ high"
    for r in range(1, 6):
        for f in range(1, 6):
            if tier_of(Scores(r, f, NEUTRAL), rules) is None:
                return f"no tier covers recency {r}, frequency {f}"
    return None
