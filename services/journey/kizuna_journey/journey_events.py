"""What happens to runs, on ``journey-events``: ``journey.entered`` when a run starts and
``journey.completed`` when it ends, whatever the reason (docs/events.md). Their ids are the
run's, so a replayed decision publishes the same events and consumers drop the copy."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from kizuna.envelope import Envelope
from kizuna_journey.adapters.store import RunRow
from kizuna_journey.domain import machine
from kizuna_journey.domain.definition import JourneyDefinition

ENTERED: Final = "journey.entered"
COMPLETED: Final = "journey.completed"
# A run's status once it has ended; journey.completed's ``outcome``.
Ending = Literal["completed", "goal", "exited", "failed", "cancelled"]
ENDINGS: Final[tuple[Ending, ...]] = ("completed", "goal", "exited", "failed", "cancelled")


def entered_id(run_id: str) -> str:
    return f"journey-entered:{run_id}"


def completed_id(run_id: str) -> str:
    return f"journey-completed:{run_id}"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _identity(run: RunRow, journey: JourneyDefinition | None) -> dict[str, Any]:
    return {
        "journey_id": run.journey_id,
        "journey_version": run.version,
        "run_id": run.run_id,
        "customer_id": run.customer_id,
        "holdout": run.holdout,
        "variant": None if journey is None else machine.variant(journey, run.run_id, run.visits),
    }


def _envelope(
    type_: str, event_id: str, run: RunRow, at: datetime, payload: dict[str, Any]
) -> Envelope:
    return Envelope(
        id=event_id,
        type=type_,
        workspace_id=run.workspace_id,
        customer_key=run.customer_id,
        occurred_at=at,
        received_at=at,
        payload=payload,
    )


def entered(run: RunRow, journey: JourneyDefinition, trigger_event_id: str | None) -> Envelope:
    """Once the run has taken its first instant steps: a split among them names the variant."""
    payload = {
        **_identity(run, journey),
        "trigger_event_id": trigger_event_id,
        "entered_at": _iso(run.entered_at),
    }
    return _envelope(ENTERED, entered_id(run.run_id), run, run.entered_at, payload)


def completed(run: RunRow, journey: JourneyDefinition | None) -> Envelope:
    assert run.ended_at is not None, run.run_id
    assert run.status in ENDINGS, (run.run_id, run.status)
    payload = {
        **_identity(run, journey),
        "outcome": run.status,
        "reason": run.end_reason,
        "goal_met": run.converted_at is not None,
        "converted_at": _iso(run.converted_at),
        "entered_at": _iso(run.entered_at),
        "ended_at": _iso(run.ended_at),
        "steps_taken": sum(run.visits.values()),
    }
    return _envelope(COMPLETED, completed_id(run.run_id), run, run.ended_at, payload)
