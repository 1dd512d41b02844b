"""Simulation: the stored events of the last N days replayed through a journey (a draft, or
any version) by the same decisions the live service makes — entry rules, holdout, splits,
waits and timeouts, goals and exits, delivery rules — in memory, in time order. Nothing is
written and nothing is sent: the runs live in a Work that is never flushed, read in a
read-only transaction.

What it cannot know: the customers' traits, consent and segments *then* (it uses what the
journey service knows now) and segment changes (not stored as events), so journeys triggered
by segments, dates, inactivity or broadcasts are refused."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna.envelope import Envelope
from kizuna.outbox import OutboxBatch
from kizuna_journey import handlers
from kizuna_journey.adapters import store
from kizuna_journey.adapters.store import ActiveJourney
from kizuna_journey.domain import definition
from kizuna_journey.domain.definition import JourneyDefinition
from kizuna_journey.domain.durations import parse_duration
from kizuna_journey.work import Work, condition_events, matches


class NotSimulable(Exception):
    pass


def events_read(journey: JourneyDefinition) -> set[str]:
    """The event names that can change what the journey does."""
    trigger = journey.trigger
    if not isinstance(trigger, definition.EventTrigger):
        raise NotSimulable(
            f"a {trigger.type} trigger cannot be replayed from stored events; only event"
            " triggers can"
        )
    names = {trigger.event} if isinstance(trigger.event, str) else set(trigger.event)
    if journey.goal is not None:
        names.add(journey.goal.event)
    names |= {e.event for e in journey.exit}
    for step in journey.steps.values():
        if isinstance(step, definition.WaitForEventStep):
            names.add(step.event)
    return names | condition_events(journey)


async def simulate(
    conn: AsyncConnection,
    workspace_id: str,
    journey_id: str,
    version: int,
    journey: JourneyDefinition,
    events: Sequence[Envelope],
    until: datetime,
) -> dict[str, Any]:
    await conn.execute(sa.text("SET TRANSACTION READ ONLY"))
    ordered = sorted(events, key=lambda e: (e.occurred_at, e.id))
    customers = sorted({e.customer_key for e in ordered})
    work = Work(conn, workspace_id, ordered[0].occurred_at if ordered else until, OutboxBatch())
    work.journeys = [ActiveJourney(workspace_id, journey_id, version, journey)]
    work.definitions = {(journey_id, version): journey}
    work.statuses = {journey_id: "active"}
    work.workspace_rules = await store.delivery_rules(conn, workspace_id)
    work.mirrors = await store.load_mirrors(conn, workspace_id, customers)
    if any(isinstance(s, definition.ConditionStep) for s in journey.steps.values()):
        work.segments = await store.segments_of(conn, workspace_id, customers)
    work.event_days = {}  # counted as the replay goes, not from today's counts
    for event in ordered:
        _fire_due(work, event.occurred_at)
        work.now = event.occurred_at
        name = handlers.track_name(event)
        if name is not None:
            days = work.event_days.setdefault(event.customer_key, {}).setdefault(name, {})
            day = event.occurred_at.date()
            days[day] = days.get(day, 0) + 1
        _goal_after_end(work, journey, event, name)
        handlers.decide_event(work, event, name)
    _fire_due(work, until)
    return _summary(work, len(ordered), len(customers))


def _goal_after_end(
    work: Work, journey: JourneyDefinition, event: Envelope, name: str | None
) -> None:
    """A goal reached after the run ended still converts it, as live (within the window)."""
    goal = journey.goal
    if goal is None or name != goal.event:
        return
    properties = event.payload.get("properties") or {}
    for run in work.new_runs.values():
        if (
            run.customer_id == event.customer_key
            and run.status != "active"
            and run.converted_at is None
            and matches(goal.where, properties)
            and run.entered_at <= event.occurred_at <= run.entered_at + parse_duration(goal.within)
        ):
            work.converted(run, event, properties)


def _fire_due(work: Work, until: datetime) -> None:
    """Timers of the simulated runs, in due order, up to ``until``."""
    while True:
        due = [
            run
            for runs in work.live.values()
            for run in runs
            if run.due_at is not None and run.due_at <= until
        ]
        if not due:
            return
        run = min(due, key=lambda r: (r.due_at, r.run_id))
        assert run.due_at is not None
        work.now = run.due_at
        work.advance(run, "timer")


def _summary(work: Work, replayed: int, customers: int) -> dict[str, Any]:
    runs = list(work.new_runs.values())
    sent: Counter[str] = Counter()
    skipped: dict[str, Counter[str]] = {}
    for step in work.steps:
        if step["outcome"] == "sent":
            sent[step["step_id"]] += 1
        elif step["outcome"] == "skipped":
            reason = str(step["detail"].get("reason", "unknown"))
            skipped.setdefault(step["step_id"], Counter())[reason] += 1
    step_ids = sorted(set(sent) | set(skipped))
    return {
        "events_replayed": replayed,
        "customers_seen": customers,
        "entered": len(runs),
        "holdout": sum(run.holdout for run in runs),
        "completed": sum(run.status == "completed" for run in runs),
        "exited_by_goal": sum(run.status == "goal" for run in runs),
        "exited": sum(run.status == "exited" for run in runs),
        "still_active": sum(run.status == "active" for run in runs),
        "converted": sum(run.converted_at is not None for run in runs),
        "messages": sum(sent.values()),
        "steps": [
            {"step_id": s, "sent": sent.get(s, 0), "skipped": dict(skipped.get(s, {}))}
            for s in step_ids
        ],
    }
