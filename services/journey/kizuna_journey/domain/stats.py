"""The statistics of journey results: conversion rates with Wilson intervals, the lift of
treatment over holdout with Newcombe's interval for a difference of proportions, and a
two-proportion z-test. Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def rate(successes: int, trials: int) -> float | None:
    return successes / trials if trials else None


def wilson(successes: int, trials: int, z: float = Z95) -> Interval | None:
    """The Wilson score interval of a proportion."""
    if trials == 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Lift:
    treatment_rate: float
    control_rate: float
    absolute: float  # treatment - control, in rate points
    relative: float | None  # absolute / control; None when control converts nobody
    interval: Interval  # 95 % interval of ``absolute`` (Newcombe, hybrid score)
    p_value: float  # two-sided, two-proportion z-test
    significant: bool  # the interval excludes zero


def lift(treated: int, treatment: int, converted: int, control: int) -> Lift | None:
    """Treatment: ``treated`` conversions among ``treatment`` runs; control likewise."""
    if treatment == 0 or control == 0:
        return None
    p1, p0 = treated / treatment, converted / control
    w1, w0 = wilson(treated, treatment), wilson(converted, control)
    assert w1 is not None
    assert w0 is not None
    difference = p1 - p0
    low = difference - math.sqrt((p1 - w1.low) ** 2 + (w0.high - p0) ** 2)
    high = difference + math.sqrt((w1.high - p1) ** 2 + (p0 - w0.low) ** 2)
    return Lift(
        p1,
        p0,
        difference,
        difference / p0 if p0 else None,
        Interval(low, high),
        two_proportion_p(treated, treatment, converted, control),
        low > 0 or high < 0,
    )


def two_proportion_p(a: int, n: int, b: int, m: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test."""
    pooled = (a + b) / (n + m)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    if spread == 0:
        return 1.0
    z = (a / n - b / m) / spread
    return math.erfc(abs(z) / math.sqrt(2))
