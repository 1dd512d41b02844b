"""Rule segment conditions, and their translation into one SQL predicate over a customer.

A condition is JSON: ``{"all": [...]}``, ``{"any": [...]}``, ``{"not": {...}}``, or a leaf:

- ``{"trait": "plan", "op": "equals", "value": "gold"}`` — ops: equals, not_equals, in,
  exists, not_exists, range (``min``/``max``, inclusive), contains (text); ``"part":
  "month"|"day"|"year"`` compares a date part of a date trait (birthday month = 4), and
  ``"value": "current"`` with a part means the current month/day/year in UTC;
- ``{"event": "Order Completed", "min_count": 2, "within_days": 30, "where": [
  {"property": "category", "op": "equals", "value": "tea"}]}`` — performed at least N times;
  ``"max_count": 0`` means did not perform;
- ``{"rfm": "tier", "op": "in", "value": ["champions"]}``, ``{"rfm": "recency", "op": "range",
  "min": 4}`` (also frequency, monetary);
- ``{"consent": "email", "status": "granted"}``;
- ``{"fact": "orders_count"|"revenue"|"last_order_at", "op": "range", ...}``; a time fact also
  takes ``within_days`` / ``before_days``;
- ``{"score": "engagement", "min": 50}`` — the engagement score, decayed to now.

Pure: the compiler only builds SQL text and bound parameters; it never runs anything. Every
value is a bound parameter; names come from fixed lists, so nothing a user sends is spliced.
Time-relative conditions compare with the bound ``:now``, so a test can move the clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

TRAIT_OPS = frozenset({"equals", "not_equals", "in", "exists", "not_exists", "range", "contains"})
DATE_PARTS = {"month": "month", "day": "day", "year": "year"}
RFM_FIELDS = {
    "tier": "c.tier",
    "recency": "c.recency_score",
    "frequency": "c.frequency_score",
    "monetary": "c.monetary_score",
}
FACTS = {
    "orders_count": "c.lifetime_orders",
    "revenue": "c.lifetime_revenue",
    "last_order_at": "c.last_order_at",
    "first_order_at": "c.first_order_at",
}
TIME_FACTS = frozenset({"last_order_at", "first_order_at"})
CHANNELS = frozenset({"email", "line", "sms", "webhook"})
MAX_DEPTH = 8
NOW = "CAST(:now AS timestamptz)"
MAX_LEAVES = 50


class InvalidCondition(ValueError):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass
class Compiled:
    sql: str
    params: dict[str, Any] = field(default_factory=dict)
    time_based: bool = False  # its truth can change with no event: the sweep re-evaluates it


class _Compiler:
    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.time_based = False
        self.leaves = 0

    def bind(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    def compile(self, node: Any, path: str, depth: int = 0) -> str:
        if depth > MAX_DEPTH:
            raise InvalidCondition(path, f"nests deeper than {MAX_DEPTH} levels")
        if not isinstance(node, dict):
            raise InvalidCondition(path, "must be an object")
        for group, joiner in (("all", " AND "), ("any", " OR ")):
            if group in node:
                items = node[group]
                if not isinstance(items, list) or not items:
                    raise InvalidCondition(f"{path}.{group}", "must be a non-empty list")
                parts = [
                    self.compile(item, f"{path}.{group}[{i}]", depth + 1)
                    for i, item in enumerate(items)
                ]
                return "(" + joiner.join(parts) + ")"
        if "not" in node:
            return f"(NOT {self.compile(node['not'], f'{path}.not', depth + 1)})"
        self.leaves += 1
        if self.leaves > MAX_LEAVES:
            raise InvalidCondition(path, f"a segment has at most {MAX_LEAVES} conditions")
        for kind, build in (
            ("trait", self.trait),
            ("event", self.event),
            ("rfm", self.rfm),
            ("consent", self.consent),
            ("fact", self.fact),
            ("score", self.score),
        ):
            if kind in node:
                return build(node, path)
        raise InvalidCondition(
            path, "must hold all, any, not, trait, event, rfm, consent, fact or score"
        )

    def _range(
        self, column: str, node: dict[str, Any], path: str, cast: str = "", *, text: bool = False
    ) -> str:
        """Numbers; with ``text``, ISO dates compared as text."""
        bounds = []
        for key, operator in (("min", ">="), ("max", "<=")):
            if node.get(key) is not None:
                value = node[key]
                if text and not isinstance(value, str):
                    raise InvalidCondition(f"{path}.{key}", "must be a date, as the other bound is")
                if not text and (isinstance(value, bool) or not isinstance(value, int | float)):
                    raise InvalidCondition(f"{path}.{key}", "must be a number")
                bounds.append(f"{column} {operator} {cast}{self.bind(value)}")
        if not bounds:
            raise InvalidCondition(path, "a range needs min or max")
        return "(" + " AND ".join(bounds) + ")"

    def trait(self, node: dict[str, Any], path: str) -> str:
        name = node["trait"]
        if not isinstance(name, str) or not name:
            raise InvalidCondition(f"{path}.trait", "must name a trait")
        op = node.get("op", "equals")
        if not isinstance(op, str) or op not in TRAIT_OPS:
            raise InvalidCondition(f"{path}.op", f"must be one of {', '.join(sorted(TRAIT_OPS))}")
        exists = (
            "EXISTS (SELECT 1 FROM seg_traits t WHERE t.workspace_id = c.workspace_id"
            f" AND t.customer_id = c.customer_id AND t.name = {self.bind(name)}"
        )
        if op == "exists":
            return exists + " AND t.value <> 'null'::jsonb)"
        if op == "not_exists":
            return "NOT " + exists + " AND t.value <> 'null'::jsonb)"
        part = node.get("part")
        if part is not None:
            if not isinstance(part, str) or part not in DATE_PARTS:
                raise InvalidCondition(f"{path}.part", "must be month, day or year")
            if op == "contains":
                raise InvalidCondition(
                    f"{path}.op", "a date part takes equals, not_equals, in or range"
                )
            column = (
                f"extract({DATE_PARTS[part]} FROM CASE WHEN t.value #>> '{{}}'"
                " ~ '^\\d{4}-\\d{2}-\\d{2}' THEN CAST(left(t.value #>> '{}', 10) AS date) END)"
            )
            if node.get("value") == "current":
                self.time_based = True
                return (
                    exists
                    + f" AND {column} = extract({DATE_PARTS[part]} FROM {NOW} AT TIME ZONE 'UTC'))"
                )
            return exists + " AND " + self._scalar(column, op, node, path, numeric=True) + ")"
        return exists + " AND " + self._scalar("t.value", op, node, path) + ")"

    def _scalar(
        self, column: str, op: str, node: dict[str, Any], path: str, *, numeric: bool = False
    ) -> str:
        value = node.get("value")
        if op == "range":
            if numeric:
                return self._range(column, node, path)
            if isinstance(node.get("min"), str) or isinstance(node.get("max"), str):
                return self._range(f"({column} #>> '{{}}')", node, path, text=True)  # ISO dates
            number = f"(CASE WHEN jsonb_typeof({column}) = 'number' THEN ({column})::numeric END)"
            return self._range(number, node, path)
        if op == "in":
            if not isinstance(value, list) or not value:
                raise InvalidCondition(f"{path}.value", "must be a non-empty list")
            options = [self._json(v, numeric, f"{path}.value") for v in value]
            return "(" + " OR ".join(f"{column} = {o}" for o in options) + ")"
        if op == "contains":
            if not isinstance(value, str):
                raise InvalidCondition(f"{path}.value", "must be a string")
            return f"strpos(lower({column} #>> '{{}}'), lower({self.bind(value)})) > 0"
        if "value" not in node:
            raise InvalidCondition(f"{path}.value", "is required")
        comparison = "=" if op == "equals" else "IS DISTINCT FROM"
        return f"{column} {comparison} {self._json(value, numeric, f'{path}.value')}"

    def _json(self, value: Any, numeric: bool, path: str) -> str:
        if numeric:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidCondition(path, "must be a number")
            return self.bind(value)
        return f"CAST({self.bind(orjson.dumps(value).decode())} AS jsonb)"

    def event(self, node: dict[str, Any], path: str) -> str:
        name = node["event"]
        if not isinstance(name, str) or not name:
            raise InvalidCondition(f"{path}.event", "must name an event")
        where = [
            "e.workspace_id = c.workspace_id",
            "e.customer_id = c.customer_id",
            f"e.name = {self.bind(name)}",
        ]
        days = node.get("within_days")
        if days is not None:
            if isinstance(days, bool) or not isinstance(days, int) or days < 1:
                raise InvalidCondition(f"{path}.within_days", "must be a whole number of days ≥ 1")
            self.time_based = True
            where.append(f"e.occurred_at > {NOW} - make_interval(days => {self.bind(days)})")
        filters = node.get("where") or []
        if not isinstance(filters, list):
            raise InvalidCondition(f"{path}.where", "must be a list of property conditions")
        for index, condition in enumerate(filters):
            at = f"{path}.where[{index}]"
            if not isinstance(condition, dict) or not isinstance(condition.get("property"), str):
                raise InvalidCondition(at, "must name a property")
            op = condition.get("op", "equals")
            if op not in ("equals", "not_equals", "in", "range", "contains"):
                raise InvalidCondition(
                    f"{at}.op", "must be equals, not_equals, in, range or contains"
                )
            column = f"(e.properties -> {self.bind(condition['property'])})"
            where.append(self._scalar(column, op, condition, at))
        count = f"(SELECT count(*) FROM seg_events e WHERE {' AND '.join(where)})"
        low, high = node.get("min_count"), node.get("max_count")
        if low is None and high is None:
            low = 1
        for key, value in (("min_count", low), ("max_count", high)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise InvalidCondition(f"{path}.{key}", "must be a whole number ≥ 0")
        parts = []
        if low is not None:
            parts.append(f"{count} >= {self.bind(low)}")
        if high is not None:
            parts.append(f"{count} <= {self.bind(high)}")
        return "(" + " AND ".join(parts) + ")"

    def rfm(self, node: dict[str, Any], path: str) -> str:
        field_name = node["rfm"]
        column = RFM_FIELDS.get(field_name) if isinstance(field_name, str) else None
        if column is None:
            raise InvalidCondition(f"{path}.rfm", "must be tier, recency, frequency or monetary")
        tier = field_name == "tier"
        op = node.get("op", "equals" if tier else "range")
        value = node.get("value")
        if op == "range" and not tier:
            return self._range(column, node, path)
        if op in ("in", "equals"):
            values = value if op == "in" else [value]
            if not isinstance(values, list) or not values:
                raise InvalidCondition(f"{path}.value", "must be a non-empty list")
            for v in values:
                if tier and not isinstance(v, str):
                    raise InvalidCondition(f"{path}.value", "must name tiers")
                if not tier and (isinstance(v, bool) or not isinstance(v, int)):
                    raise InvalidCondition(f"{path}.value", "must be scores from 1 to 5")
            return "(" + " OR ".join(f"{column} = {self.bind(v)}" for v in values) + ")"
        raise InvalidCondition(
            f"{path}.op", "must be equals or in" if tier else "must be equals, in or range"
        )

    def consent(self, node: dict[str, Any], path: str) -> str:
        channel = node["consent"]
        if not isinstance(channel, str) or channel not in CHANNELS:
            raise InvalidCondition(f"{path}.consent", "must be email, line, sms or webhook")
        status = node.get("status", "granted")
        if status not in ("granted", "revoked"):
            raise InvalidCondition(f"{path}.status", "must be granted or revoked")
        return (
            "EXISTS (SELECT 1 FROM seg_consent k WHERE k.workspace_id = c.workspace_id"
            f" AND k.customer_id = c.customer_id AND k.channel = {self.bind(channel)}"
            f" AND k.status = {self.bind(status)})"
        )

    def fact(self, node: dict[str, Any], path: str) -> str:
        name = node["fact"]
        column = FACTS.get(name) if isinstance(name, str) else None
        if column is None:
            raise InvalidCondition(f"{path}.fact", f"must be one of {', '.join(sorted(FACTS))}")
        if name in TIME_FACTS:
            parts = []
            for key, operator in (("within_days", ">"), ("before_days", "<=")):
                days = node.get(key)
                if days is not None:
                    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
                        raise InvalidCondition(f"{path}.{key}", "must be a whole number of days")
                    self.time_based = True
                    parts.append(
                        f"{column} {operator} {NOW} - make_interval(days => {self.bind(days)})"
                    )
            if not parts:
                raise InvalidCondition(path, "a time fact needs within_days or before_days")
            return "(" + " AND ".join(parts) + ")"
        return self._range(column, node, path)

    def score(self, node: dict[str, Any], path: str) -> str:
        if node["score"] != "engagement":
            raise InvalidCondition(f"{path}.score", "must be engagement")
        self.time_based = True  # it decays
        now_decayed = (
            f"(c.engagement_score * power(0.5, extract(epoch FROM ({NOW}"
            " - coalesce(c.engagement_at, {NOW}))) / 86400.0 / :half_life))"
        ).replace("{NOW}", NOW)
        return self._range(now_decayed, node, path)


def compile_conditions(conditions: Any) -> Compiled:
    """The predicate over ``seg_customers c``; raises InvalidCondition naming the place."""
    compiler = _Compiler()
    sql = compiler.compile(conditions, "conditions")
    return Compiled(sql, compiler.params, compiler.time_based)
