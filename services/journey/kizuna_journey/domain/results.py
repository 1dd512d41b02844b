"""Journey results assembled from counts: runs and conversions overall, holdout against
treatment, each split variant, each step's messages. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kizuna_journey.domain import stats

MESSAGE_KINDS = (
    "delivered",
    "bounced",
    "failed",
    "complained",
    "opened",
    "clicked",
    "unsubscribed",
)


@dataclass(frozen=True)
class RunGroup:
    holdout: bool
    variant: str | None
    status: str
    runs: int
    converted: int
    revenue: float


@dataclass(frozen=True)
class StepCount:
    step_id: str
    variant: str | None
    outcome: str  # sent, skipped, or a message kind (delivered, opened…)
    reason: str | None
    count: int


def _share(converted: int, runs: int) -> dict[str, Any]:
    interval = stats.wilson(converted, runs)
    return {
        "runs": runs,
        "converted": converted,
        "conversion_rate": stats.rate(converted, runs),
        "interval": None if interval is None else [interval.low, interval.high],
    }


def _lift(treated: int, treatment: int, converted: int, control: int) -> dict[str, Any] | None:
    found = stats.lift(treated, treatment, converted, control)
    if found is None:
        return None
    return {
        "absolute": found.absolute,
        "relative": found.relative,
        "interval": [found.interval.low, found.interval.high],
        "p_value": found.p_value,
        "significant": found.significant,
    }


def report(groups: Iterable[RunGroup], steps: Iterable[StepCount]) -> dict[str, Any]:
    groups = list(groups)
    by_status: dict[str, int] = {}
    for group in groups:
        by_status[group.status] = by_status.get(group.status, 0) + group.runs
    entered = sum(g.runs for g in groups)
    converted = sum(g.converted for g in groups)
    treatment = [g for g in groups if not g.holdout]
    holdout = [g for g in groups if g.holdout]
    t_runs, t_conv = sum(g.runs for g in treatment), sum(g.converted for g in treatment)
    h_runs, h_conv = sum(g.runs for g in holdout), sum(g.converted for g in holdout)
    return {
        "runs": {
            "entered": entered,
            "active": by_status.get("active", 0),
            "completed": by_status.get("completed", 0),
            "exited_by_goal": by_status.get("goal", 0),
            "exited": by_status.get("exited", 0),
            "failed": by_status.get("failed", 0),
            "cancelled": by_status.get("cancelled", 0),
            "converted": converted,
            "conversion_rate": stats.rate(converted, entered),
            "revenue": sum(g.revenue for g in groups),
        },
        "holdout": {
            "treatment": _share(t_conv, t_runs),
            "holdout": _share(h_conv, h_runs),
            "lift": _lift(t_conv, t_runs, h_conv, h_runs),
        }
        if h_runs
        else None,
        "variants": _variants(treatment),
        "steps": _steps(steps),
    }


def _variants(treatment: list[RunGroup]) -> list[dict[str, Any]]:
    """Treatment runs per split variant, each compared with the first variant."""
    names = sorted({g.variant for g in treatment if g.variant is not None})
    if not names:
        return []
    totals = {
        name: (
            sum(g.runs for g in treatment if g.variant == name),
            sum(g.converted for g in treatment if g.variant == name),
            sum(g.revenue for g in treatment if g.variant == name),
        )
        for name in names
    }
    first_runs, first_conv, _ = totals[names[0]]
    return [
        {
            "variant": name,
            **_share(conv, runs),
            "revenue": revenue,
            "vs_first": None if name == names[0] else _lift(conv, runs, first_conv, first_runs),
        }
        for name, (runs, conv, revenue) in totals.items()
    ]


def _steps(counts: Iterable[StepCount]) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str | None], dict[str, Any]] = {}
    for count in counts:
        row = rows.setdefault(
            (count.step_id, count.variant),
            {
                "step_id": count.step_id,
                "variant": count.variant,
                "sent": 0,
                "skipped": {},
                **dict.fromkeys(MESSAGE_KINDS, 0),
            },
        )
        if count.outcome == "sent":
            row["sent"] += count.count
        elif count.outcome == "skipped":
            reason = count.reason or "unknown"
            row["skipped"][reason] = row["skipped"].get(reason, 0) + count.count
        elif count.outcome in MESSAGE_KINDS:
            row[count.outcome] += count.count
    for row in rows.values():
        delivered = row["delivered"] or row["sent"]
        row["open_rate"] = stats.rate(row["opened"], delivered)
        row["click_rate"] = stats.rate(row["clicked"], delivered)
    return sorted(rows.values(), key=lambda r: (r["step_id"], r["variant"] or ""))


def daily(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    days: dict[str, dict[str, Any]] = {}
    for row in rows:
        day = days.setdefault(
            str(row["day"]),
            {"day": str(row["day"]), "entered": 0, "converted": 0, "revenue": 0.0, "sent": 0,
             **dict.fromkeys(MESSAGE_KINDS, 0)},
        )  # fmt: skip
        kind = str(row["kind"])
        if kind in day:
            day[kind] += int(row["n"])
        if kind == "converted":
            day["revenue"] += float(row["value"] or 0)
    return [days[d] for d in sorted(days)]


def choose_winner(
    names: list[str], figures: Iterable[tuple[int, int, int]], metric: str
) -> tuple[int, dict[str, Any]]:
    """The branch whose test runs did best on ``metric`` — (index, runs, successes) per
    branch; a tie, or no data, goes to the lower index — and what the decision rested on."""
    found = {index: (runs, successes) for index, runs, successes in figures}
    rows = [(i, *found.get(i, (0, 0))) for i in range(len(names))]
    best = max(rows, key=lambda r: ((r[2] / r[1]) if r[1] else -1.0, -r[0]))
    winner, w_runs, w_successes = best
    branches: list[dict[str, Any]] = [
        {
            "branch": names[i],
            "index": i,
            "runs": runs,
            metric: successes,
            "rate": stats.rate(successes, runs),
            "vs_winner": None if i == winner else _lift(successes, runs, w_successes, w_runs),
        }
        for i, runs, successes in rows
    ]
    others = [b["vs_winner"] for b in branches if b["vs_winner"] is not None]
    return winner, {
        "metric": metric,
        "winner": names[winner],
        "branches": branches,
        "significant": bool(others) and all(o["significant"] for o in others),
    }
