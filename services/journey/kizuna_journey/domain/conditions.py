"""Branch conditions, evaluated against what the journey service knows of a customer.

Same leaves as rule segments (docs/segmenter.md) where they make sense for one customer:
``{"all": [...]}``, ``{"any": [...]}``, ``{"not": {...}}`` and the leaves
``{"trait": "plan", "op": "equals", "value": "gold"}`` (ops: equals, not_equals, in, exists,
not_exists, range with min/max, contains; ``"part": "month"|"day"`` of a date trait),
``{"segment": "champions"}`` (``"member": false`` for not in it; RFM tiers are segments),
``{"rfm": "recency"|"frequency"|"monetary", "op": "range", "min": 4}``,
``{"event": "Order Completed", "min_count": 1, "within_days": 30}`` (``max_count`` too) and
``{"consent": "email", "status": "granted"}``. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

TRAIT_OPS = frozenset({"equals", "not_equals", "in", "exists", "not_exists", "range", "contains"})
RFM_SCORES = frozenset({"recency", "frequency", "monetary"})
CHANNELS = frozenset({"email", "line", "sms", "webhook"})
MAX_DEPTH = 8
MAX_DAYS = 36_600  # a hundred years


class InvalidCondition(ValueError):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class CustomerFacts:
    traits: Mapping[str, Any] = field(default_factory=dict)
    segments: frozenset[str] = frozenset()
    rfm: Mapping[str, int] = field(default_factory=dict)
    consent: Mapping[str, str] = field(default_factory=dict)
    suppressed: frozenset[str] = frozenset()  # channels: hard bounce, complaint
    event_days: Mapping[str, Mapping[date, int]] = field(default_factory=dict)


def check(node: Any, path: str = "", depth: int = 0) -> None:
    here = path or "condition"
    if depth > MAX_DEPTH:
        raise InvalidCondition(here, f"nests deeper than {MAX_DEPTH} levels")
    if not isinstance(node, dict) or not node:
        raise InvalidCondition(here, "must be a non-empty object")
    for group in ("all", "any"):
        if group in node:
            items = node[group]
            if not isinstance(items, list) or not items:
                raise InvalidCondition(f"{here}.{group}", "must be a non-empty list")
            for i, item in enumerate(items):
                check(item, _child(path, f"{group}.{i}"), depth + 1)
            return
    if "not" in node:
        check(node["not"], _child(path, "not"), depth + 1)
        return
    _check_leaf(node, path)


def _child(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def _check_leaf(node: dict[str, Any], path: str) -> None:
    if "trait" in node:
        if not isinstance(node["trait"], str) or not node["trait"]:
            raise InvalidCondition(_child(path, "trait"), "must name a trait")
        if node.get("op", "equals") not in TRAIT_OPS:
            raise InvalidCondition(_child(path, "op"), f"must be one of {sorted(TRAIT_OPS)}")
        if node.get("part") not in (None, "month", "day", "year"):
            raise InvalidCondition(_child(path, "part"), "must be month, day or year")
    elif "segment" in node:
        if not isinstance(node["segment"], str) or not node["segment"]:
            raise InvalidCondition(_child(path, "segment"), "must name a segment or RFM tier")
    elif "rfm" in node:
        if node["rfm"] not in RFM_SCORES:
            raise InvalidCondition(_child(path, "rfm"), f"must be one of {sorted(RFM_SCORES)}")
    elif "event" in node:
        if not isinstance(node["event"], str) or not node["event"]:
            raise InvalidCondition(_child(path, "event"), "must name an event")
        for key in ("min_count", "max_count", "within_days"):
            value = node.get(key)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_DAYS
            ):
                raise InvalidCondition(_child(path, key), f"must be a whole number 0..{MAX_DAYS}")
    elif "consent" in node:
        if node["consent"] not in CHANNELS:
            raise InvalidCondition(_child(path, "consent"), f"must be one of {sorted(CHANNELS)}")
        if node.get("status", "granted") not in ("granted", "revoked"):
            raise InvalidCondition(_child(path, "status"), "must be granted or revoked")
    else:
        raise InvalidCondition(
            path or "condition",
            "expects all, any, not, or a trait, segment, rfm, event or consent leaf",
        )


def holds(node: dict[str, Any], facts: CustomerFacts, now: datetime) -> bool:
    if "all" in node:
        return all(holds(item, facts, now) for item in node["all"])
    if "any" in node:
        return any(holds(item, facts, now) for item in node["any"])
    if "not" in node:
        return not holds(node["not"], facts, now)
    if "trait" in node:
        return compare(_trait(facts.traits, node), node)
    if "segment" in node:
        return bool((node["segment"] in facts.segments) == bool(node.get("member", True)))
    if "rfm" in node:
        return compare(facts.rfm.get(node["rfm"]), node)
    if "event" in node:
        return _event_history(facts, node, now)
    if "consent" in node:
        stated = facts.consent.get(node["consent"], "granted")
        return bool(stated == node.get("status", "granted"))
    return False


def _trait(traits: Mapping[str, Any], node: dict[str, Any]) -> Any:
    value = traits.get(node["trait"])
    part = node.get("part")
    if part is None or value is None:
        return value
    try:
        day = date.fromisoformat(str(value)[:10])
    except ValueError:
        return None
    return getattr(day, part)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _same(left: Any, right: Any) -> bool:
    if left == right:
        return True
    a, b = _number(left), _number(right)
    return a is not None and a == b


def compare(value: Any, node: Mapping[str, Any]) -> bool:
    """The trait and property operators; ``equals`` matches 36 and "36" alike."""
    op = node.get("op", "equals")
    expected = node.get("value")
    if op == "exists":
        return value is not None
    if op == "not_exists":
        return value is None
    if value is None:
        return bool(op == "not_equals")
    if op == "equals":
        return _same(value, expected)
    if op == "not_equals":
        return not _same(value, expected)
    if op == "in":
        return isinstance(expected, list) and any(_same(value, item) for item in expected)
    if op == "contains":
        return isinstance(value, str) and isinstance(expected, str) and expected in value
    if op == "range":
        number = _number(value)
        low, high = _number(node.get("min")), _number(node.get("max"))
        if number is None:
            return False
        return (low is None or number >= low) and (high is None or number <= high)
    return False


def _event_history(facts: CustomerFacts, node: dict[str, Any], now: datetime) -> bool:
    days = facts.event_days.get(node["event"], {})
    within = node.get("within_days")
    since = (now - timedelta(days=within)).date() if within is not None else date.min
    count = sum(n for day, n in days.items() if day >= since)
    low = node.get("min_count", 1 if node.get("max_count") is None else 0)
    high = node.get("max_count")
    return count >= low and (high is None or count <= high)


def events_named(node: Any) -> set[str]:
    """Every event a condition looks at (so its history can be loaded beforehand)."""
    if not isinstance(node, dict):
        return set()
    if "event" in node and isinstance(node["event"], str):
        return {node["event"]}
    found: set[str] = set()
    for key in ("all", "any"):
        for item in node.get(key) or []:
            found |= events_named(item)
    if "not" in node:
        found |= events_named(node["not"])
    return found
