"""RFM scoring and tiers on hand-made distributions: ties, one buyer, all equal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kizuna_segmenter.domain.rfm import (
    DEFAULT_TIERS,
    Bounds,
    Facts,
    Scores,
    TierRule,
    check_rules,
    next_recency_change,
    score,
    tier_of,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SPREAD = Bounds(
    recency_days=(10, 30, 60, 120),
    frequency=(1, 2, 3, 6),
    monetary=(5000, 10000, 20000, 50000),
    buyers=100,
)


def facts(days_ago: float, orders: int, revenue: float) -> Facts:
    return Facts(NOW - timedelta(days=days_ago), orders, revenue)


@pytest.mark.parametrize(
    ("days", "orders", "revenue", "expected"),
    [
        (0, 10, 90000, Scores(5, 5, 5)),
        (10, 1, 5000, Scores(5, 1, 1)),  # exactly on a cut: better recency, lower F and M
        (10.5, 2, 5000.01, Scores(4, 2, 2)),
        (400, 3, 20000, Scores(1, 3, 3)),
        (61, 7, 50001, Scores(2, 5, 5)),
    ],
)
def test_scores_by_quintile_cut_points(
    days: float, orders: int, revenue: float, expected: Scores
) -> None:
    assert score(facts(days, orders, revenue), SPREAD, NOW) == expected


def test_when_most_buyers_bought_once_they_share_the_lowest_frequency() -> None:
    mostly_once = Bounds((10, 30, 60, 120), (1, 1, 1, 2), (1, 1, 1, 1), buyers=50)
    assert score(facts(5, 1, 1), mostly_once, NOW) == Scores(5, 1, 1)
    assert score(facts(5, 2, 2), mostly_once, NOW) == Scores(5, 4, 5)
    assert score(facts(5, 3, 1), mostly_once, NOW) == Scores(5, 5, 1)


def test_all_equal_values_give_everyone_the_same_scores() -> None:
    equal = Bounds((7, 7, 7, 7), (2, 2, 2, 2), (900, 900, 900, 900), buyers=20)
    assert score(facts(7, 2, 900), equal, NOW) == Scores(5, 1, 1)
    assert len({score(facts(7, 2, 900), equal, NOW) for _ in range(3)}) == 1


def test_small_workspaces_use_fixed_thresholds_and_neutral_monetary() -> None:
    one_buyer = Bounds(buyers=1)
    assert score(facts(3, 1, 100), one_buyer, NOW) == Scores(5, 1, 3)
    assert score(facts(100, 4, 1e6), one_buyer, NOW) == Scores(3, 4, 3)
    assert score(facts(1000, 9, 0), one_buyer, NOW) == Scores(1, 5, 3)
    assert score(Facts(None, 0, 0), one_buyer, NOW) is None


def test_the_tier_map_covers_every_cell_and_names_the_classics() -> None:
    assert check_rules(DEFAULT_TIERS) is None
    names = {(r, f): tier_of(Scores(r, f, 3)).id for r in range(1, 6) for f in range(1, 6)}  # type: ignore[union-attr]
    assert names[5, 5] == "champions"
    assert names[5, 1] == "new"
    assert names[4, 1] == "promising"
    assert names[3, 4] == "loyal"
    assert names[2, 3] == "at_risk"
    assert names[1, 5] == "cant_lose"
    assert names[2, 1] == "hibernating"
    assert names[1, 1] == "lost"
    assert tier_of(None) is None


def test_custom_rules_are_checked_for_gaps_and_duplicates() -> None:
    rules = (
        TierRule("vip", "優良顧客", (4, 5), (4, 5)),
        TierRule("rest", "その他", (1, 5), (1, 3)),
    )
    assert check_rules(rules) == "no tier covers recency 1, frequency 4"
    assert check_rules((*rules, TierRule("vip", "x", (1, 5), (1, 5)))) == "tier ids must be unique"
    assert "within 1..5" in (check_rules((TierRule("bad", "x", (0, 5), (1, 5)),)) or "")


def test_next_recency_change_is_when_the_next_cut_point_is_crossed() -> None:
    last = NOW - timedelta(days=12)
    change = next_recency_change(last, SPREAD, NOW)
    assert change == last + timedelta(days=30, microseconds=1)
    assert score(Facts(last, 1, 1), SPREAD, change - timedelta(seconds=1)).recency == 4  # type: ignore[union-attr]
    assert score(Facts(last, 1, 1), SPREAD, change).recency == 3  # type: ignore[union-attr]
    assert next_recency_change(NOW - timedelta(days=500), SPREAD, NOW) is None
