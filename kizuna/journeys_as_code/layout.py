"""The stable, readable order items are written in: keys by role then by name, the ways out
of a step last, and a journey's steps in the order a run walks them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FIRST = (
    "id", "name", "description", "type", "channel", "template", "category", "topic",
    "trigger", "entry", "goal", "exit", "holdout_percent", "delivery", "start", "end", "steps",
    "conditions", "subject", "preheader", "html", "text", "messages", "body", "locales",
    "policy", "period", "all", "any", "not", "if", "trait", "event", "segment", "rfm",
    "consent", "status", "fact", "score", "property", "part", "op", "value", "min", "max",
    "min_count", "max_count", "within_days", "where", "duration", "until", "timeout",
)  # fmt: skip
LAST = ("on_event", "on_timeout", "then", "else", "next")
EXITS = ("on_event", "on_timeout", "then", "else", "next")


def ordered(value: Any) -> Any:
    """Keys in a stable, readable order (id, name, type, … then the rest by name; the ways
    out of a step last) and a journey's steps in the order a run walks them."""
    if isinstance(value, list):
        return [ordered(v) for v in value]
    if not isinstance(value, dict):
        return value
    keys = sorted(value, key=_rank)
    out = {k: ordered(value[k]) for k in keys}
    if isinstance(value.get("steps"), dict) and isinstance(value.get("start"), str):
        out["steps"] = {k: out["steps"][k] for k in walk(value["start"], value["steps"])}
    return out


def _rank(key: str) -> tuple[int, int, str]:
    if key in FIRST:
        return (0, FIRST.index(key), key)
    if key in LAST:
        return (2, LAST.index(key), key)
    return (1, 0, key)


def walk(start: str, steps: Mapping[str, Any]) -> list[str]:
    """Step ids depth first from ``start`` along each step's ways out; unreached ones last."""
    seen: list[str] = []
    stack = [start]
    while stack:
        step_id = stack.pop()
        if step_id in seen or step_id not in steps:
            continue
        seen.append(step_id)
        stack.extend(reversed(_exits(steps[step_id])))
    return seen + sorted(k for k in steps if k not in seen)


def _exits(step: Any) -> list[str]:
    if not isinstance(step, dict):
        return []
    found = [step[k] for k in EXITS if _is_text(step.get(k))]
    branches = step.get("branches")
    if isinstance(branches, list):
        found += [b["next"] for b in branches if isinstance(b, dict) and _is_text(b.get("next"))]
    return found


def _is_text(value: Any) -> bool:
    return isinstance(value, str)
