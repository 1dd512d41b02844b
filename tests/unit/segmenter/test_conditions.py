"""Rule segment conditions compile to one SQL predicate: every leaf kind and operator, refusals
that name the offending field, the nesting limits, and values only ever as bound parameters."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kizuna_segmenter.domain.conditions import (
    MAX_DEPTH,
    MAX_LEAVES,
    Compiled,
    InvalidCondition,
    compile_conditions,
)

PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
SUPPLIED_BY_THE_CALLER = {"now", "half_life"}  # rules.matching binds these


def compiled(conditions: Any) -> Compiled:
    """Compiles, and checks that every placeholder in the SQL is bound and every bound
    parameter is used."""
    result = compile_conditions(conditions)
    used = set(PLACEHOLDER.findall(result.sql))
    assert used - SUPPLIED_BY_THE_CALLER == set(result.params), result.sql
    assert result.sql.count("(") == result.sql.count(")"), result.sql
    return result


def refused(conditions: Any) -> InvalidCondition:
    with pytest.raises(InvalidCondition) as caught:
        compile_conditions(conditions)
    error = caught.value
    assert str(error) == f"{error.path}: {error.problem}"
    return error


# --- every leaf kind and operator compiles -------------------------------------------------


@pytest.mark.parametrize(
    ("leaf", "fragment", "values"),
    [
        ({"trait": "plan", "value": "gold"}, "t.value = CAST(", ["plan", '"gold"']),
        ({"trait": "plan", "op": "equals", "value": 3}, "t.value = CAST(", ["plan", "3"]),
        (
            {"trait": "plan", "op": "not_equals", "value": "gold"},
            "t.value IS DISTINCT FROM CAST(",
            ["plan", '"gold"'],
        ),
        (
            {"trait": "plan", "op": "in", "value": ["gold", "platinum"]},
            " OR t.value = CAST(",
            ["plan", '"gold"', '"platinum"'],
        ),
        ({"trait": "phone", "op": "exists"}, "t.value <> 'null'::jsonb", ["phone"]),
        ({"trait": "phone", "op": "not_exists"}, "NOT EXISTS (", ["phone"]),
        (
            {"trait": "age", "op": "range", "min": 20, "max": 29},
            "jsonb_typeof(t.value) = 'number'",
            ["age", 20, 29],
        ),
        (
            {"trait": "signed_up", "op": "range", "min": "2025-01-01"},
            "(t.value #>> '{}') >= :p1",
            ["signed_up", "2025-01-01"],
        ),
        (
            {"trait": "city", "op": "contains", "value": "Kyoto"},
            "strpos(lower(t.value #>> '{}'), lower(:p1)) > 0",
            ["city", "Kyoto"],
        ),
    ],
)
def test_every_trait_operator_compiles(
    leaf: dict[str, Any], fragment: str, values: list[Any]
) -> None:
    result = compiled(leaf)
    assert fragment in result.sql
    assert "seg_traits t" in result.sql
    assert list(result.params.values()) == values
    assert result.time_based is False


@pytest.mark.parametrize("part", ["month", "day", "year"])
def test_date_parts_compare_a_number_or_the_current_one(part: str) -> None:
    fixed = compiled({"trait": "birthday", "part": part, "value": 4})
    assert f"extract({part} FROM CASE WHEN" in fixed.sql
    assert fixed.params == {"p0": "birthday", "p1": 4}
    assert fixed.time_based is False

    current = compiled({"trait": "birthday", "part": part, "value": "current"})
    assert f"extract({part} FROM CAST(:now AS timestamptz) AT TIME ZONE 'UTC')" in current.sql
    assert current.params == {"p0": "birthday"}
    assert current.time_based is True, "the sweep must re-evaluate it as the calendar turns"

    within = compiled({"trait": "birthday", "part": part, "op": "range", "min": 1, "max": 6})
    assert within.params == {"p0": "birthday", "p1": 1, "p2": 6}
    listed = compiled({"trait": "birthday", "part": part, "op": "in", "value": [1, 2]})
    assert listed.params == {"p0": "birthday", "p1": 1, "p2": 2}


def test_an_event_counts_at_least_once_by_default() -> None:
    result = compiled({"event": "Order Completed"})
    assert "FROM seg_events e WHERE" in result.sql
    assert result.sql.endswith(">= :p1)")
    assert result.params == {"p0": "Order Completed", "p1": 1}
    assert result.time_based is False


@pytest.mark.parametrize(
    ("leaf", "counts", "values"),
    [
        ({"event": "Page Viewed", "min_count": 3}, ") >= :p1)", [3]),
        ({"event": "Page Viewed", "max_count": 0}, ") <= :p1)", [0]),  # did not perform
        (
            {"event": "Page Viewed", "min_count": 2, "max_count": 5},
            ") >= :p1 AND (SELECT count(*) FROM seg_events e WHERE",
            [2, 5],
        ),
    ],
)
def test_event_counts(leaf: dict[str, Any], counts: str, values: list[int]) -> None:
    result = compiled(leaf)
    assert counts in result.sql
    assert list(result.params.values()) == ["Page Viewed", *values]
    if len(values) == 2:
        assert result.sql.endswith(") <= :p2)")


def test_an_event_within_days_with_every_property_filter() -> None:
    result = compiled(
        {
            "event": "Order Completed",
            "min_count": 2,
            "within_days": 30,
            "where": [
                {"property": "category", "op": "equals", "value": "tea"},
                {"property": "shop", "op": "not_equals", "value": "outlet"},
                {"property": "brand", "op": "in", "value": ["ippodo", "marukyu"]},
                {"property": "total", "op": "range", "min": 1000, "max": 5000},
                {"property": "title", "op": "contains", "value": "matcha"},
                {"property": "size", "value": "large"},  # equals by default
            ],
        }
    )
    assert result.time_based is True
    assert "e.occurred_at > CAST(:now AS timestamptz) - make_interval(days => :p1)" in result.sql
    assert len(set(re.findall(r"e\.properties -> (:p\d+)", result.sql))) == 6
    assert "IS DISTINCT FROM" in result.sql
    assert "jsonb_typeof((e.properties -> :p" in result.sql
    assert "strpos(lower(" in result.sql
    assert list(result.params.values()) == [
        "Order Completed", 30,
        "category", '"tea"', "shop", '"outlet"', "brand", '"ippodo"', '"marukyu"',
        "total", 1000, 5000, "title", "matcha", "size", '"large"',
        2,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("leaf", "fragment", "values"),
    [
        ({"rfm": "tier", "value": "champions"}, "c.tier = :p0", ["champions"]),
        (
            {"rfm": "tier", "op": "in", "value": ["loyal", "at_risk"]},
            "(c.tier = :p0 OR c.tier = :p1)",
            ["loyal", "at_risk"],
        ),
        ({"rfm": "recency", "min": 4}, "(c.recency_score >= :p0)", [4]),
        (
            {"rfm": "frequency", "op": "range", "min": 2, "max": 3},
            "(c.frequency_score >= :p0 AND c.frequency_score <= :p1)",
            [2, 3],
        ),
        ({"rfm": "monetary", "max": 2}, "(c.monetary_score <= :p0)", [2]),
        ({"rfm": "recency", "op": "equals", "value": 5}, "c.recency_score = :p0", [5]),
        ({"rfm": "monetary", "op": "in", "value": [4, 5]}, "c.monetary_score = :p1", [4, 5]),
    ],
)
def test_rfm_tier_and_scores(leaf: dict[str, Any], fragment: str, values: list[Any]) -> None:
    result = compiled(leaf)
    assert fragment in result.sql
    assert list(result.params.values()) == values
    assert result.time_based is False


@pytest.mark.parametrize("channel", ["email", "line", "sms", "webhook"])
@pytest.mark.parametrize("status", ["granted", "revoked"])
def test_consent_on_every_channel(channel: str, status: str) -> None:
    result = compiled({"consent": channel, "status": status})
    assert "FROM seg_consent k" in result.sql
    assert result.params == {"p0": channel, "p1": status}


def test_consent_means_granted_unless_told() -> None:
    assert compiled({"consent": "email"}).params == {"p0": "email", "p1": "granted"}


@pytest.mark.parametrize(
    ("leaf", "fragment", "values", "time_based"),
    [
        (
            {"fact": "orders_count", "op": "range", "min": 2},
            "(c.lifetime_orders >= :p0)",
            [2],
            False,
        ),
        (
            {"fact": "revenue", "min": 5000, "max": 20000.5},
            "(c.lifetime_revenue >= :p0 AND c.lifetime_revenue <= :p1)",
            [5000, 20000.5],
            False,
        ),
        (
            {"fact": "last_order_at", "within_days": 30},
            "(c.last_order_at > CAST(:now AS timestamptz) - make_interval(days => :p0))",
            [30],
            True,
        ),
        (
            {"fact": "last_order_at", "before_days": 90},
            "(c.last_order_at <= CAST(:now AS timestamptz) - make_interval(days => :p0))",
            [90],
            True,
        ),
        (
            {"fact": "first_order_at", "within_days": 365, "before_days": 30},
            "c.first_order_at > CAST(:now AS timestamptz) - make_interval(days => :p0) AND"
            " c.first_order_at <= CAST(:now AS timestamptz) - make_interval(days => :p1)",
            [365, 30],
            True,
        ),
    ],
)
def test_facts(leaf: dict[str, Any], fragment: str, values: list[Any], time_based: bool) -> None:
    result = compiled(leaf)
    assert fragment in result.sql
    assert list(result.params.values()) == values
    assert result.time_based is time_based


def test_the_engagement_score_decays_to_now() -> None:
    result = compiled({"score": "engagement", "min": 50})
    assert "c.engagement_score * power(0.5" in result.sql
    assert ":half_life" in result.sql
    assert ":now" in result.sql
    assert result.params == {"p0": 50}
    assert result.time_based is True


# --- combining --------------------------------------------------------------------------


def test_all_any_and_not_combine_with_and_or_not() -> None:
    result = compiled(
        {
            "all": [
                {"any": [{"trait": "plan", "value": "gold"}, {"rfm": "tier", "value": "loyal"}]},
                {"not": {"consent": "email", "status": "revoked"}},
            ]
        }
    )
    assert result.sql.startswith("((")
    assert ") AND (NOT EXISTS (SELECT 1 FROM seg_consent" in result.sql
    assert " OR (c.tier = :p2))" in result.sql
    assert list(result.params.values()) == ["plan", '"gold"', "loyal", "email", "revoked"]
    assert result.time_based is False


def test_one_time_relative_leaf_deep_inside_makes_the_segment_time_based() -> None:
    result = compiled(
        {"any": [{"trait": "plan", "value": "gold"},
                 {"not": {"all": [{"fact": "last_order_at", "within_days": 7}]}}]}
    )  # fmt: skip
    assert result.time_based is True


def nested(levels: int, leaf: dict[str, Any]) -> dict[str, Any]:
    node = leaf
    for level in range(levels):
        node = {"not": node} if level % 2 else {"all": [node]}
    return node


def test_nesting_is_limited_to_eight_levels() -> None:
    leaf = {"trait": "plan", "value": "gold"}
    assert "t.name" in compiled(nested(MAX_DEPTH, leaf)).sql
    error = refused(nested(MAX_DEPTH + 1, leaf))
    assert error.path == "conditions" + ".all[0].not" * 4 + ".all[0]"
    assert "deeper than 8" in error.problem


def test_a_segment_has_at_most_fifty_leaves() -> None:
    leaves = [{"trait": f"t{i}", "op": "exists"} for i in range(MAX_LEAVES)]
    assert len(compiled({"any": leaves}).params) == MAX_LEAVES
    error = refused({"any": [*leaves[:25], {"not": {"all": leaves[25:]}}, {"event": "X"}]})
    assert error.path == "conditions.any[26]"
    assert "at most 50" in error.problem


# --- bad input names the offending field --------------------------------------------------


@pytest.mark.parametrize(
    ("conditions", "path"),
    [
        ([], "conditions"),
        ("plan = gold", "conditions"),
        ({}, "conditions"),
        ({"banana": 1}, "conditions"),
        ({"all": []}, "conditions.all"),
        ({"any": {"trait": "plan"}}, "conditions.any"),
        ({"not": [{"trait": "plan", "value": 1}]}, "conditions.not"),
        ({"all": [{"trait": "plan", "value": 1}, "x"]}, "conditions.all[1]"),
        ({"any": [{"all": [{"not": {"fact": "x"}}]}]}, "conditions.any[0].all[0].not.fact"),
        # traits
        ({"trait": "", "value": 1}, "conditions.trait"),
        ({"trait": 7, "value": 1}, "conditions.trait"),
        ({"trait": "plan", "op": "like", "value": "g%"}, "conditions.op"),
        ({"trait": "plan", "op": ["in"], "value": ["gold"]}, "conditions.op"),
        ({"trait": "plan", "op": "equals"}, "conditions.value"),
        ({"trait": "plan", "op": "in", "value": "gold"}, "conditions.value"),
        ({"trait": "plan", "op": "in", "value": []}, "conditions.value"),
        ({"trait": "city", "op": "contains", "value": 3}, "conditions.value"),
        ({"trait": "age", "op": "range"}, "conditions"),
        ({"trait": "age", "op": "range", "min": True}, "conditions.min"),
        ({"trait": "age", "op": "range", "max": [30]}, "conditions.max"),
        ({"trait": "birthday", "part": "week", "value": 3}, "conditions.part"),
        ({"trait": "birthday", "part": ["month"], "value": 3}, "conditions.part"),
        ({"trait": "birthday", "part": "month", "value": "april"}, "conditions.value"),
        ({"trait": "birthday", "part": "month", "op": "in", "value": [4, "may"]},
         "conditions.value"),
        ({"trait": "birthday", "part": "month", "op": "range", "min": "4"}, "conditions.min"),
        ({"trait": "birthday", "part": "month", "op": "contains", "value": "4"}, "conditions.op"),
        # events
        ({"event": ""}, "conditions.event"),
        ({"event": None}, "conditions.event"),
        ({"event": "Order Completed", "within_days": 0}, "conditions.within_days"),
        ({"event": "Order Completed", "within_days": 1.5}, "conditions.within_days"),
        ({"event": "Order Completed", "within_days": True}, "conditions.within_days"),
        ({"event": "Order Completed", "min_count": -1}, "conditions.min_count"),
        ({"event": "Order Completed", "min_count": "2"}, "conditions.min_count"),
        ({"event": "Order Completed", "max_count": False}, "conditions.max_count"),
        ({"event": "Order Completed", "where": {"category": "tea"}}, "conditions.where"),
        ({"event": "Order Completed", "where": [{"value": "tea"}]}, "conditions.where[0]"),
        ({"event": "X", "where": [{"property": "a", "value": 1}, "b"]}, "conditions.where[1]"),
        ({"event": "X", "where": [{"property": "a", "op": "exists"}]}, "conditions.where[0].op"),
        ({"event": "X", "where": [{"property": "a", "op": "in", "value": 1}]},
         "conditions.where[0].value"),
        ({"event": "X", "where": [{"property": "a", "op": "range"}]}, "conditions.where[0]"),
        ({"event": "X", "where": [{"property": "a"}]}, "conditions.where[0].value"),
        # rfm
        ({"rfm": "loyalty"}, "conditions.rfm"),
        ({"rfm": ["tier"], "value": "new"}, "conditions.rfm"),
        ({"rfm": "tier", "op": "like", "value": "new"}, "conditions.op"),
        ({"rfm": "tier", "op": "in", "value": []}, "conditions.value"),
        ({"rfm": "tier", "op": "in", "value": "new"}, "conditions.value"),
        ({"rfm": "tier"}, "conditions.value"),
        ({"rfm": "tier", "value": 5}, "conditions.value"),
        ({"rfm": "tier", "op": "range", "min": 1}, "conditions.op"),
        ({"rfm": "recency"}, "conditions"),
        ({"rfm": "recency", "min": "4"}, "conditions.min"),
        ({"rfm": "frequency", "op": "in", "value": [1, "2"]}, "conditions.value"),
        ({"rfm": "monetary", "op": "equals", "value": "high"}, "conditions.value"),
        # consent
        ({"consent": "fax"}, "conditions.consent"),
        ({"consent": ["email"]}, "conditions.consent"),
        ({"consent": "email", "status": "maybe"}, "conditions.status"),
        # facts
        ({"fact": "lifetime_value", "min": 1}, "conditions.fact"),
        ({"fact": {"name": "revenue"}, "min": 1}, "conditions.fact"),
        ({"fact": "revenue"}, "conditions"),
        ({"fact": "revenue", "min": "lots"}, "conditions.min"),
        ({"fact": "orders_count", "max": None}, "conditions"),
        ({"fact": "last_order_at"}, "conditions"),
        ({"fact": "last_order_at", "within_days": -1}, "conditions.within_days"),
        ({"fact": "last_order_at", "before_days": "30"}, "conditions.before_days"),
        # score
        ({"score": "loyalty", "min": 50}, "conditions.score"),
        ({"score": "engagement"}, "conditions"),
        ({"score": "engagement", "min": "50"}, "conditions.min"),
    ],
)  # fmt: skip
def test_bad_input_names_the_offending_field(conditions: Any, path: str) -> None:
    assert refused(conditions).path == path


def test_the_place_of_a_bad_leaf_is_named_from_the_root() -> None:
    error = refused(
        {"all": [{"trait": "plan", "value": "gold"},
                 {"any": [{"event": "X"}, {"not": {"rfm": "recency", "min": "high"}}]}]}
    )  # fmt: skip
    assert error.path == "conditions.all[1].any[1].not.min"
    assert error.problem == "must be a number"


# --- values are bound, never spliced --------------------------------------------------------

HOSTILE = "x'); DROP TABLE seg_customers; --"


def test_every_user_supplied_value_is_a_bound_parameter() -> None:
    result = compiled(
        {
            "all": [
                {"trait": HOSTILE, "value": HOSTILE},
                {"trait": HOSTILE, "op": "in", "value": [HOSTILE, {"k": HOSTILE}]},
                {"trait": HOSTILE, "op": "contains", "value": HOSTILE},
                {"trait": HOSTILE, "op": "range", "min": HOSTILE, "max": HOSTILE},
                {"trait": HOSTILE, "op": "not_exists"},
                {"event": HOSTILE, "where": [
                    {"property": HOSTILE, "value": HOSTILE},
                    {"property": HOSTILE, "op": "contains", "value": HOSTILE},
                ]},
                {"rfm": "tier", "op": "in", "value": [HOSTILE]},
            ]
        }
    )  # fmt: skip
    assert "DROP" not in result.sql
    assert "seg_customers" not in result.sql
    hostile = [v for v in result.params.values() if isinstance(v, str) and "DROP TABLE" in v]
    assert len(hostile) == 17  # every name and value above
    assert '"x\'); DROP TABLE seg_customers; --"' in result.params.values(), "JSON, as bound"


@pytest.mark.parametrize(
    "leaf",
    [
        {"trait": "plan", "value": ":p0 OR 1=1"},
        {"event": ":now", "where": [{"property": ":half_life", "value": ":p9"}]},
    ],
)
def test_a_value_that_looks_like_a_placeholder_stays_a_value(leaf: dict[str, Any]) -> None:
    result = compiled(leaf)
    assert "1=1" not in result.sql
    assert all(name.startswith("p") for name in result.params)


def test_parameter_names_are_unique_across_the_whole_tree() -> None:
    result = compiled({"any": [{"trait": f"t{i}", "value": i} for i in range(12)]})
    assert list(result.params) == [f"p{i}" for i in range(24)]
    assert set(PLACEHOLDER.findall(result.sql)) == set(result.params)
