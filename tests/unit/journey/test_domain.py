"""The journey domain without I/O: durations, validation, the state machine, time rules."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kizuna.envelope import Envelope
from kizuna_journey import scenarios
from kizuna_journey.domain import clock, definition, machine, mirror, rules
from kizuna_journey.domain.conditions import CustomerFacts, holds
from kizuna_journey.domain.durations import InvalidDuration, parse_duration

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
TOKYO = ZoneInfo("Asia/Tokyo")


def journey(steps: dict[str, Any], start: str = "a", **extra: Any) -> definition.JourneyDefinition:
    return definition.JourneyDefinition.model_validate(
        {"name": "t", "trigger": {"type": "api"}, "start": start, "steps": steps, **extra}
    )


def situation(**traits: Any) -> machine.Situation:
    return machine.Situation(
        CustomerFacts(traits={"email": "x@example.com", **traits}),
        rules.Delivery(),
        rules.Budget(),
        NOW,
    )


def test_durations() -> None:
    assert parse_duration("PT1H") == timedelta(hours=1)
    assert parse_duration("P1W2DT3M4.5S") == timedelta(days=9, minutes=3, seconds=4.5)
    for bad in ("P1M", "P1Y", "1H", "PT", "P", "P1DT", "PT-1H"):
        with pytest.raises(InvalidDuration):
            parse_duration(bad)


def test_every_scenario_is_a_valid_journey() -> None:
    for build in scenarios.SCENARIOS.values():
        parsed = definition.JourneyDefinition.model_validate(build({}))
        assert definition.validate(parsed) == []
        assert scenarios.templates_of(build({}))


def test_graph_problems_point_at_the_step() -> None:
    loop = journey(
        {
            "a": {"type": "condition", "if": {"trait": "x"}, "then": "b", "else": "c"},
            "b": {"type": "update_trait", "traits": {"y": 1}, "next": "a"},
            "c": {"type": "end"},
            "d": {"type": "end"},
        }
    )
    problems = {(p.field, p.problem) for p in definition.validate(loop)}
    assert ("steps.d", "is never reached from start") in problems
    assert any(field == "steps.b.next" and "no wait" in p for field, p in problems)
    waiting = journey(
        {
            "a": {"type": "wait", "duration": "PT1H", "next": "b"},
            "b": {"type": "send", "channel": "email", "template": "t", "next": "a"},
        }
    )
    assert definition.validate(waiting) == []  # a loop through a wait is fine
    bad_condition = journey({"a": {"type": "condition", "if": {"any": [{"rfm": "x"}]}}})
    [problem] = definition.validate(bad_condition)
    assert problem.field == "steps.a.if.any.0.rfm"


def test_machine_walks_until_a_wait_with_deterministic_ids() -> None:
    flow = journey(
        {
            "a": {"type": "send", "channel": "email", "template": "t", "next": "w"},
            "w": {
                "type": "wait_for_event",
                "event": "Order Completed",
                "timeout": "PT1H",
                "on_event": None,
                "on_timeout": "a",
            },
        }
    )
    run = machine.Run("r1", "j", 1, "c")
    first = machine.advance(flow, run, situation(), "start")
    assert [s.send_id for s in first.sends] == ["send:r1:a:1"]
    assert first.due_at == NOW + timedelta(hours=1)
    assert first.waiting_for == "Order Completed"
    again = machine.advance(flow, run, situation(), "start")
    assert [s.send_id for s in again.sends] == ["send:r1:a:1"]  # same decision, same id
    timed_out = machine.advance(flow, first.run, situation(), "timer")
    assert [s.send_id for s in timed_out.sends] == ["send:r1:a:2"]  # a second visit
    done = machine.advance(flow, first.run, situation(), "event")
    assert done.ended == "completed"
    assert done.sends == []


def test_sends_are_skipped_for_holdout_consent_suppression_and_no_address() -> None:
    flow = journey({"a": {"type": "send", "channel": "email", "template": "t"}})
    cases = {
        "holdout": (
            machine.Run("r", "j", 1, "c", holdout=True),
            CustomerFacts(traits={"email": "x"}),
        ),
        "consent": (
            machine.Run("r", "j", 1, "c"),
            CustomerFacts(traits={"email": "x"}, consent={"email": "revoked"}),
        ),
        "suppressed": (
            machine.Run("r", "j", 1, "c"),
            CustomerFacts(traits={"email": "x"}, suppressed=frozenset({"email"})),
        ),
        "no_address": (machine.Run("r", "j", 1, "c"), CustomerFacts()),
    }
    for reason, (run, facts) in cases.items():
        outcome = machine.advance(
            flow, run, machine.Situation(facts, rules.Delivery(), rules.Budget(), NOW), "start"
        )
        assert outcome.sends == []
        assert outcome.executed[0].detail["reason"] == reason


def test_quiet_hours_postpone_marketing_and_caps_count_across_sends() -> None:
    flow = journey({"a": {"type": "send", "channel": "email", "template": "t"}})
    quiet = rules.Delivery(quiet_hours=(time(21), time(9)), spread=timedelta(0))
    late = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # 22:00 in Tokyo
    facts = CustomerFacts(traits={"email": "x", "timezone": "Asia/Tokyo"})
    run = machine.Run("r", "j", 1, "c")
    outcome = machine.advance(
        flow, run, machine.Situation(facts, quiet, rules.Budget(), late), "start"
    )
    assert outcome.due_at == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo
    resumed = machine.advance(
        flow, outcome.run, machine.Situation(facts, quiet, rules.Budget(), outcome.due_at), "timer"
    )
    assert [s.send_id for s in resumed.sends] == ["send:r:a:1"]  # the same visit, the same id
    capped = rules.Delivery(caps=((1, timedelta(days=1)),))
    budget = rules.Budget([NOW - timedelta(hours=2)])
    skipped = machine.advance(flow, run, machine.Situation(facts, capped, budget, NOW), "start")
    assert skipped.executed[0].detail["reason"] == "frequency_cap"


def test_split_is_stable_and_follows_the_weights() -> None:
    flow = journey(
        {
            "a": {
                "type": "split",
                "branches": [{"weight": 3, "next": "x"}, {"weight": 1, "next": "y"}],
            },
            "x": {"type": "end"},
            "y": {"type": "end"},
        }
    )
    chosen = [
        machine.advance(flow, machine.Run(f"r{i}", "j", 1, "c"), situation(), "start")
        .executed[0]
        .detail["index"]
        for i in range(2000)
    ]
    assert 0.7 < chosen.count(0) / len(chosen) < 0.8


def test_conditions() -> None:
    facts = CustomerFacts(
        traits={"plan": "gold", "age": "36", "birthday": "1990-04-02"},
        segments=frozenset({"champions"}),
        rfm={"recency": 5},
        event_days={"Order Completed": {date(2026, 3, 1): 2, date(2025, 1, 1): 5}},
    )
    assert holds({"trait": "age", "op": "range", "min": 30, "max": 40}, facts, NOW)
    assert holds({"trait": "birthday", "part": "month", "value": 4}, facts, NOW)
    assert holds({"all": [{"segment": "champions"}, {"not": {"segment": "lost"}}]}, facts, NOW)
    assert holds({"rfm": "recency", "op": "range", "min": 4}, facts, NOW)
    assert holds({"event": "Order Completed", "min_count": 2, "within_days": 30}, facts, NOW)
    assert not holds({"event": "Order Completed", "min_count": 3, "within_days": 30}, facts, NOW)
    assert holds({"event": "Order Completed", "min_count": 7}, facts, NOW)
    assert holds({"consent": "email"}, facts, NOW)  # not stated: allowed


def test_next_anniversary_handles_leap_days_and_offsets() -> None:
    leap = clock.next_anniversary(NOW, date(2000, 2, 29), time(9), TOKYO)
    assert leap == datetime(2027, 2, 28, 0, 0, tzinfo=UTC)
    before = clock.next_anniversary(NOW, date(1990, 3, 10), time(9), TOKYO, offset_days=-3)
    assert before == datetime(2026, 3, 7, 0, 0, tzinfo=UTC)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
def test_quiet_window_end_is_after_now_and_outside_it(naive: datetime) -> None:
    now = naive.replace(tzinfo=UTC)
    end = clock.quiet_until(now, time(21), time(9), TOKYO)
    local = now.astimezone(TOKYO).time()
    if end is None:
        assert time(9) <= local < time(21)
    else:
        assert now < end <= now + timedelta(hours=12)
        assert end.astimezone(TOKYO).time() == time(9)


@given(st.text(min_size=1, max_size=20), st.integers(min_value=1, max_value=3600))
def test_spread_stays_within_the_window(key: str, seconds: int) -> None:
    offset = clock.spread_offset(key, timedelta(seconds=seconds))
    assert timedelta(0) <= offset < timedelta(seconds=seconds)
    assert offset == clock.spread_offset(key, timedelta(seconds=seconds))


def _mirror_event(i: int, minute: int, kind: int, value: int) -> Envelope:
    at = NOW + timedelta(minutes=minute)
    if kind == 0:
        payload: dict[str, Any] = {"type": "identify", "traits": {"plan": value, "tier": -value}}
        return Envelope(id=f"e{i}", type="identify", workspace_id="w", customer_key="c",
                        occurred_at=at, received_at=at, payload=payload)  # fmt: skip
    status = "granted" if value % 2 else "revoked"
    payload = {"type": "track", "event": "Consent Updated",
               "properties": {"channel": "email", "status": status}}  # fmt: skip
    return Envelope(id=f"e{i}", type="track", workspace_id="w", customer_key="c",
                    occurred_at=at, received_at=at, payload=payload)  # fmt: skip


@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 1), st.integers(0, 9)), min_size=1, max_size=12
    ),
    st.randoms(use_true_random=False),
)
def test_the_mirror_does_not_depend_on_arrival_order(
    spec: list[tuple[int, int, int]], rnd: Any
) -> None:
    events = [_mirror_event(i, *item) for i, item in enumerate(spec)]
    shuffled = list(events)
    rnd.shuffle(shuffled)
    one, other = mirror.Mirror(), mirror.Mirror()
    for event in events:
        mirror.observe(one, event)
    for event in shuffled + shuffled[:3]:  # duplicates change nothing
        mirror.observe(other, event)
    assert (one.traits, one.consent) == (other.traits, other.consent)
    halves = mirror.Mirror(), mirror.Mirror()
    for index, event in enumerate(shuffled):
        mirror.observe(halves[index % 2], event)
    halves[0].absorb(halves[1])
    assert (halves[0].traits, halves[0].consent) == (one.traits, one.consent)
