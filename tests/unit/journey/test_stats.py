from __future__ import annotations

import math

import pytest

from kizuna_journey.domain import stats


def test_wilson_matches_the_textbook_example() -> None:
    # Newcombe (1998), example: 81 of 263 → 0.2553 to 0.3662
    interval = stats.wilson(81, 263)
    assert interval is not None
    assert interval.low == pytest.approx(0.2553, abs=1e-4)
    assert interval.high == pytest.approx(0.3662, abs=1e-4)
    assert stats.wilson(0, 0) is None


def test_newcombe_difference_matches_the_published_example() -> None:
    # Newcombe (1998) method 10, example (a): 56/70 vs 48/80 → 0.0524 to 0.3339
    result = stats.lift(56, 70, 48, 80)
    assert result is not None
    assert result.absolute == pytest.approx(0.2)
    assert result.interval.low == pytest.approx(0.0524, abs=1e-4)
    assert result.interval.high == pytest.approx(0.3339, abs=1e-4)
    assert result.relative == pytest.approx(0.2 / 0.6)
    assert result.significant


def test_no_difference_is_not_significant_and_an_empty_side_has_no_lift() -> None:
    same = stats.lift(10, 100, 10, 100)
    assert same is not None
    assert same.absolute == 0
    assert not same.significant
    assert math.isclose(same.p_value, 1.0)
    assert stats.lift(5, 10, 0, 0) is None
    zero_control = stats.lift(5, 10, 0, 10)
    assert zero_control is not None
    assert zero_control.relative is None
