"""The journey state machine: from where a run stands and what just happened, the steps it
executes now and where it waits next. Pure: the caller loads facts and stores the outcome.

Every step execution has a deterministic id ``<run>:<step>:<visit>`` (visit counts how often
the run entered that step), so replaying the same decision yields the same ids, and a send's
id ``send:<execution id>`` lets the notifier drop a second copy."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from kizuna_journey.domain import clock, conditions, definition
from kizuna_journey.domain.conditions import CustomerFacts
from kizuna_journey.domain.definition import JourneyDefinition
from kizuna_journey.domain.durations import parse_duration, parse_time_of_day
from kizuna_journey.domain.rules import Budget, Delivery

MAX_INSTANT_STEPS = 500
ADDRESS_TRAITS = {
    "email": ("email",),
    "line": ("lineUserId", "line_user_id"),
    "sms": ("phone",),
}
Resume = Literal["start", "timer", "event"]


@dataclass(frozen=True)
class Run:
    run_id: str
    journey_id: str
    version: int
    customer_id: str
    holdout: bool = False
    step: str | None = None
    visits: Mapping[str, int] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)  # the trigger's properties


@dataclass(frozen=True)
class Executed:
    execution_id: str
    step_id: str
    step_type: str
    outcome: str  # sent, skipped, postponed, branched, waiting, updated, ended
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SendRequest:
    send_id: str
    execution_id: str
    step_id: str
    channel: str
    category: str
    template: str | None
    data: Mapping[str, Any]
    url: str | None = None


@dataclass(frozen=True)
class TraitUpdate:
    execution_id: str
    traits: Mapping[str, Any]


@dataclass
class Outcome:
    run: Run
    executed: list[Executed] = field(default_factory=list)
    sends: list[SendRequest] = field(default_factory=list)
    trait_updates: list[TraitUpdate] = field(default_factory=list)
    due_at: datetime | None = None  # set while the run waits
    waiting_for: str | None = None  # the event a wait_for_event step listens for
    ended: str | None = None  # why the run ended, once it has


@dataclass(frozen=True)
class Situation:
    """What the machine may look at besides the run: the customer and the rules."""

    facts: CustomerFacts
    delivery: Delivery
    budget: Budget
    now: datetime
    winners: Mapping[str, int] = field(default_factory=dict)  # A/B split step → branch index


def _timezone(situation: Situation) -> Any:
    return clock.zone(situation.facts.traits.get("timezone"), situation.delivery.default_timezone)


def advance(journey: JourneyDefinition, run: Run, situation: Situation, resume: Resume) -> Outcome:
    """Moves ``run`` on: from the start, or from the step it waits at because its timer fired
    or its awaited event arrived; stops at the next wait or at the end."""
    outcome = Outcome(run)
    if resume == "start":
        target: str | None = journey.start
    else:
        assert run.step is not None
        target = _resumed_target(journey, run.step, resume, outcome)
        if target == run.step:  # a postponed send runs again under the same visit
            return _walk(journey, outcome, situation, target, revisit=True)
    return _walk(journey, outcome, situation, target, revisit=False)


def _resumed_target(
    journey: JourneyDefinition, step_id: str, resume: Resume, outcome: Outcome
) -> str | None:
    step = journey.steps[step_id]
    match step:
        case definition.WaitStep():
            return step.next
        case definition.WaitForEventStep():
            return step.on_event if resume == "event" else step.on_timeout
        case definition.SendStep() | definition.WebhookStep() | definition.SplitStep():
            return step_id
    outcome.ended = "invalid_resume"
    return None


def _walk(
    journey: JourneyDefinition,
    outcome: Outcome,
    situation: Situation,
    target: str | None,
    *,
    revisit: bool,
) -> Outcome:
    for _ in range(MAX_INSTANT_STEPS):
        if outcome.ended is not None:
            return outcome
        if target is None:
            outcome.ended = "completed"
            outcome.run = replace(outcome.run, step=None)
            return outcome
        if not revisit:
            visits = dict(outcome.run.visits)
            visits[target] = visits.get(target, 0) + 1
            outcome.run = replace(outcome.run, visits=visits)
        revisit = False
        outcome.run = replace(outcome.run, step=target)
        target = _execute(journey, outcome, situation, target)
        if outcome.due_at is not None:
            return outcome
    outcome.ended = "too_many_steps"
    return outcome


def _execution_id(run: Run, step_id: str) -> str:
    return f"{run.run_id}:{step_id}:{run.visits.get(step_id, 1)}"


def _execute(
    journey: JourneyDefinition, outcome: Outcome, situation: Situation, step_id: str
) -> str | None:
    """Runs one step; returns the next step id (or None at the end of the graph)."""
    run = outcome.run
    step = journey.steps[step_id]
    execution_id = _execution_id(run, step_id)

    def log(result: str, **detail: Any) -> None:
        outcome.executed.append(Executed(execution_id, step_id, step.type, result, detail))

    match step:
        case definition.WaitStep():
            if step.duration is not None:
                outcome.due_at = situation.now + parse_duration(step.duration)
            else:
                at = parse_time_of_day(step.until or "00:00")
                outcome.due_at = clock.next_time_of_day(situation.now, at, _timezone(situation))
            log("waiting", until=outcome.due_at.isoformat())
            return None
        case definition.WaitForEventStep():
            outcome.due_at = situation.now + parse_duration(step.timeout)
            outcome.waiting_for = step.event
            log("waiting", event=step.event, until=outcome.due_at.isoformat())
            return None
        case definition.ConditionStep():
            held = conditions.holds(step.if_, situation.facts, situation.now)
            log("branched", branch="then" if held else "else")
            return step.then if held else step.else_
        case definition.SplitStep():
            return _branch(step, step_id, run, outcome, situation, log)
        case definition.SendStep() | definition.WebhookStep():
            return _send(step, outcome, situation, step_id, execution_id, log)
        case definition.UpdateTraitStep():
            outcome.trait_updates.append(TraitUpdate(execution_id, dict(step.traits)))
            log("updated", traits=sorted(step.traits))
            return step.next
        case definition.EndStep():
            log("ended")
            outcome.ended = "completed"
            return None
    return None


def _branch_name(step: definition.SplitStep, index: int) -> str:
    return step.branches[index].name or str(index)


def variant(journey: JourneyDefinition, run_id: str, visits: Mapping[str, int]) -> str | None:
    """The branch the run took at the first split step it has passed (in the definition's
    order), named as in the step log; None before any split. A split is stable per run, so
    this is the same whenever it is asked."""
    for step_id, step in journey.steps.items():
        if isinstance(step, definition.SplitStep) and visits.get(step_id):
            if step.winner is not None:
                return None  # held runs take the winner: the step log tells
            return _branch_name(step, _split(step, f"{run_id}:{step_id}"))
    return None


def _branch(
    step: definition.SplitStep,
    step_id: str,
    run: Run,
    outcome: Outcome,
    situation: Situation,
    log: Callable[..., None],
) -> str | None:
    """A split: a stable random branch; with a winner test, the test share takes a random
    branch, the rest wait for the winner and then take it (so do runs arriving later)."""
    test = step.winner
    if test is not None and step_id in situation.winners:
        chosen = situation.winners[step_id]
        log("branched", branch=_branch_name(step, chosen), index=chosen, winner=True)
        return step.branches[chosen].next
    if test is not None and clock.bucket(f"{run.run_id}:{step_id}:test") >= test.test_percent:
        outcome.due_at = situation.now + parse_duration(test.after)
        log("held", reason="ab_test", until=outcome.due_at.isoformat())
        return None
    chosen = _split(step, f"{run.run_id}:{step_id}")
    log("branched", branch=_branch_name(step, chosen), index=chosen, test=test is not None)
    return step.branches[chosen].next


def _split(step: definition.SplitStep, key: str) -> int:
    total = sum(branch.weight for branch in step.branches)
    point = clock.bucket(key) / 100 * total
    for index, branch in enumerate(step.branches):
        point -= branch.weight
        if point < 0:
            return index
    return len(step.branches) - 1


def _send(
    step: definition.SendStep | definition.WebhookStep,
    outcome: Outcome,
    situation: Situation,
    step_id: str,
    execution_id: str,
    log: Any,
) -> str | None:
    run = outcome.run
    channel = "webhook" if isinstance(step, definition.WebhookStep) else step.channel
    reason = _blocked(channel, run, situation)
    if reason is not None:
        log("skipped", reason=reason, channel=channel)
        return step.next
    if step.category == "marketing":
        quiet = situation.delivery.quiet_hours
        if quiet is not None:
            ends = clock.quiet_until(situation.now, quiet[0], quiet[1], _timezone(situation))
            if ends is not None:
                outcome.due_at = ends + clock.spread_offset(execution_id, situation.delivery.spread)
                log("postponed", reason="quiet_hours", until=outcome.due_at.isoformat())
                return None
        if not situation.budget.allows(situation.delivery.caps, situation.now):
            log("skipped", reason="frequency_cap", channel=channel)
            return step.next
        situation.budget.spend(situation.now)
    data = {**run.data, **(step.data if isinstance(step, definition.SendStep) else step.body)}
    outcome.sends.append(
        SendRequest(
            send_id=f"send:{execution_id}",
            execution_id=execution_id,
            step_id=step_id,
            channel=channel,
            category=step.category,
            template=step.template,
            data=data,
            url=step.url if isinstance(step, definition.WebhookStep) else None,
        )
    )
    log("sent", channel=channel, category=step.category, send_id=f"send:{execution_id}")
    return step.next


def _blocked(channel: str, run: Run, situation: Situation) -> str | None:
    """Why nothing may go out on ``channel`` now, or None. Transactional messages skip the
    quiet hours and the caps, never consent or suppression."""
    if run.holdout:
        return "holdout"
    facts = situation.facts
    if channel in facts.suppressed:
        return "suppressed"
    if facts.consent.get(channel) == "revoked":
        return "consent"
    names = ADDRESS_TRAITS.get(channel, ())
    if names and not any(facts.traits.get(name) for name in names):
        return "no_address"
    return None
