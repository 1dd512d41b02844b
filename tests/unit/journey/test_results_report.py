from __future__ import annotations

from kizuna_journey.domain import results
from kizuna_journey.domain.results import RunGroup, StepCount


def test_a_journey_without_holdout_or_split_reports_plain_counts() -> None:
    report = results.report(
        [
            RunGroup(False, None, "completed", 8, 2, 900.0),
            RunGroup(False, None, "active", 2, 0, 0.0),
        ],
        [
            StepCount("mail", None, "sent", None, 7),
            StepCount("mail", None, "skipped", "consent", 2),
            StepCount("mail", None, "skipped", "frequency_cap", 1),
            StepCount("mail", None, "delivered", None, 6),
            StepCount("mail", None, "clicked", None, 3),
        ],
    )
    assert report["runs"]["entered"] == 10
    assert report["runs"]["active"] == 2
    assert report["runs"]["conversion_rate"] == 0.2
    assert report["runs"]["revenue"] == 900.0
    assert report["holdout"] is None
    assert report["variants"] == []
    (mail,) = report["steps"]
    assert mail["skipped"] == {"consent": 2, "frequency_cap": 1}
    assert mail["click_rate"] == 0.5


def test_days_add_up_by_kind_and_revenue_follows_conversions() -> None:
    days = results.daily(
        [
            {"day": "2026-03-01", "kind": "entered", "n": 5, "value": 0},
            {"day": "2026-03-01", "kind": "converted", "n": 2, "value": 3000},
            {"day": "2026-03-02", "kind": "opened", "n": 4, "value": 0},
        ]
    )
    assert [d["day"] for d in days] == ["2026-03-01", "2026-03-02"]
    assert days[0]["converted"] == 2
    assert days[0]["revenue"] == 3000
    assert days[1]["opened"] == 4
