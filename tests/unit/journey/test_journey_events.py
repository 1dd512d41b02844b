"""journey.entered and journey.completed as built from a run, without I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kizuna_journey import journey_events
from kizuna_journey.adapters.store import RunRow
from kizuna_journey.domain import definition, machine, rules
from kizuna_journey.domain.conditions import CustomerFacts

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


def journey(steps: dict[str, Any], start: str = "a") -> definition.JourneyDefinition:
    return definition.JourneyDefinition.model_validate(
        {"name": "t", "trigger": {"type": "api"}, "start": start, "steps": steps}
    )


SPLIT = journey(
    {
        "a": {"type": "wait", "duration": "PT1H", "next": "ab"},
        "ab": {
            "type": "split",
            "branches": [{"weight": 1, "name": "A"}, {"weight": 1}, {"weight": 2, "name": "C"}],
        },
    }
)


def run_row(**changes: Any) -> RunRow:
    row = RunRow(
        run_id="run_1",
        workspace_id="ws",
        journey_id="j",
        version=3,
        customer_id="c1",
        holdout=True,
        step=None,
        visits={"a": 1, "ab": 1},
        data={},
        due_at=None,
        waiting_for=None,
        entered_at=NOW,
    )
    return replace(row, **changes)


def test_variant_is_the_branch_the_split_logged() -> None:
    situation = machine.Situation(CustomerFacts(), rules.Delivery(), rules.Budget(), NOW)
    for n in range(30):
        run = machine.Run(f"run_{n}", "j", 1, "c")
        waiting = machine.advance(SPLIT, run, situation, "start")
        assert machine.variant(SPLIT, run.run_id, waiting.run.visits) is None  # not split yet
        done = machine.advance(SPLIT, waiting.run, situation, "timer")
        [split] = [e for e in done.executed if e.step_type == "split"]
        assert machine.variant(SPLIT, run.run_id, done.run.visits) == split.detail["branch"]
    plain = journey({"a": {"type": "end"}})
    assert machine.variant(plain, "run_1", {"a": 1}) is None


def test_entered_names_the_run_and_its_trigger() -> None:
    event = journey_events.entered(run_row(), SPLIT, "ev-1")
    assert (event.type, event.id, event.customer_key) == (
        "journey.entered",
        "journey-entered:run_1",
        "c1",
    )
    assert event.occurred_at == NOW
    assert event.payload == {
        "journey_id": "j",
        "journey_version": 3,
        "run_id": "run_1",
        "customer_id": "c1",
        "holdout": True,
        "variant": machine.variant(SPLIT, "run_1", {"ab": 1}),
        "trigger_event_id": "ev-1",
        "entered_at": NOW.isoformat(),
    }


@pytest.mark.parametrize("ending", journey_events.ENDINGS)
def test_completed_for_every_ending(ending: str) -> None:
    ended_at = NOW + timedelta(hours=2)
    converted = NOW + timedelta(hours=1) if ending == "goal" else None
    run = run_row(status=ending, end_reason="why", ended_at=ended_at, converted_at=converted)
    event = journey_events.completed(run, None)
    assert (event.type, event.id) == ("journey.completed", "journey-completed:run_1")
    assert event.occurred_at == ended_at
    payload = event.payload
    assert (payload["outcome"], payload["reason"]) == (ending, "why")
    assert payload["goal_met"] is (ending == "goal")
    assert payload["converted_at"] == (converted.isoformat() if converted else None)
    assert (payload["entered_at"], payload["ended_at"]) == (NOW.isoformat(), ended_at.isoformat())
    assert payload["steps_taken"] == 2
    assert payload["variant"] is None  # no definition at hand


def test_completed_refuses_a_live_run() -> None:
    with pytest.raises(AssertionError):
        journey_events.completed(run_row(ended_at=NOW), SPLIT)
