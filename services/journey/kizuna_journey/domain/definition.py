"""A journey is data: trigger, entry rule, goal, exits, holdout and a graph of steps.

The shapes here are checked field by field by pydantic; ``validate`` then checks the graph
(unknown and unreachable steps, loops that never wait) and the conditions. Pure: no I/O."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from kizuna_journey.domain import conditions
from kizuna_journey.domain.durations import parse_duration, parse_time_of_day

StepId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-.]{0,127}$")]
EventName = Annotated[str, Field(min_length=1, max_length=200)]
Duration = Annotated[str, Field(description="ISO 8601 duration of fixed length: PT1H, P7D")]
TimeOfDay = Annotated[str, Field(description="HH:MM, 24-hour, in the customer's timezone")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration(value: str | None) -> str | None:
    if value is not None:
        parse_duration(value)
    return value


def _time_of_day(value: str | None) -> str | None:
    if value is not None:
        parse_time_of_day(value)
    return value


class PropertyFilter(Strict):
    property: str = Field(min_length=1, max_length=200)
    op: Literal["equals", "not_equals", "in", "exists", "not_exists", "range", "contains"] = (
        "equals"
    )
    value: Any = None
    min: float | None = None
    max: float | None = None


# Triggers


class EventTrigger(Strict):
    type: Literal["event"]
    event: EventName | list[EventName] = Field(description="An event, or a list: any of them")
    where: list[PropertyFilter] = Field(default_factory=list, max_length=20)

    def names(self, name: str | None) -> bool:
        return name is not None and name in (
            [self.event] if isinstance(self.event, str) else self.event
        )


class SegmentTrigger(Strict):
    type: Literal["segment"]
    segment: Slug | list[Slug] = Field(
        description="A rule segment's or RFM tier's id (champions), or a list: any of them"
    )
    on: Literal["entered", "exited"] = "entered"

    def names(self, segment_id: str) -> bool:
        return segment_id in ([self.segment] if isinstance(self.segment, str) else self.segment)


class DateTrigger(Strict):
    type: Literal["date"]
    trait: str = Field(default="birthday", min_length=1, max_length=200)
    at: TimeOfDay = "09:00"
    offset_days: int = Field(default=0, ge=-365, le=365)
    spread: Duration = "PT5M"

    _check_at = field_validator("at")(_time_of_day)
    _check_spread = field_validator("spread")(_duration)


class InactivityTrigger(Strict):
    type: Literal["inactivity"]
    event: EventName
    for_: Duration = Field(alias="for")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    _check_for = field_validator("for_")(_duration)


class ApiTrigger(Strict):
    type: Literal["api"]


class BroadcastTrigger(Strict):
    type: Literal["broadcast"]
    segment: Slug
    at: AwareDatetime = Field(description="First run; with local_time, its wall-clock time")
    local_time: bool = Field(
        default=False, description="Send at the same wall-clock time in each customer's timezone"
    )
    repeat: Duration | None = None
    spread: Duration = "PT5M"

    _check_repeat = field_validator("repeat", "spread")(_duration)


Trigger = Annotated[
    EventTrigger | SegmentTrigger | DateTrigger | InactivityTrigger | ApiTrigger | BroadcastTrigger,
    Field(discriminator="type"),
]

# Steps


class WaitStep(Strict):
    type: Literal["wait"]
    duration: Duration | None = None
    until: TimeOfDay | None = Field(default=None, description="The next HH:MM, customer's time")
    next: StepId | None = None

    _check_duration = field_validator("duration")(_duration)
    _check_until = field_validator("until")(_time_of_day)


class WaitForEventStep(Strict):
    type: Literal["wait_for_event"]
    event: EventName
    where: list[PropertyFilter] = Field(default_factory=list, max_length=20)
    timeout: Duration
    on_event: StepId | None = None
    on_timeout: StepId | None = None

    _check_timeout = field_validator("timeout")(_duration)


class ConditionStep(Strict):
    type: Literal["condition"]
    if_: dict[str, Any] = Field(alias="if")
    then: StepId | None = None
    else_: StepId | None = Field(default=None, alias="else")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Branch(Strict):
    weight: float = Field(gt=0)
    next: StepId | None = None
    name: str | None = Field(default=None, max_length=100)


class WinnerTest(Strict):
    """An A/B test with an automatic winner: ``test_percent`` of the runs take a random branch
    at once; the rest wait ``after`` and then all take the branch that did best on
    ``metric`` among the test runs."""

    test_percent: int = Field(ge=1, le=99)
    after: Duration
    metric: Literal["opened", "clicked", "converted"] = "opened"

    _check_after = field_validator("after")(_duration)


class SplitStep(Strict):
    type: Literal["split"]
    branches: list[Branch] = Field(min_length=2, max_length=10)
    winner: WinnerTest | None = None


class SendStep(Strict):
    type: Literal["send"]
    channel: Literal["email", "line", "sms"]
    template: Slug
    category: Literal["marketing", "transactional"] = "marketing"
    data: dict[str, Any] = Field(default_factory=dict, description="Template variables")
    next: StepId | None = None


class UpdateTraitStep(Strict):
    type: Literal["update_trait"]
    traits: dict[str, Any] = Field(min_length=1)
    next: StepId | None = None


class WebhookStep(Strict):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://", max_length=2000)
    template: Slug | None = Field(default=None, description="A JSON body template")
    body: dict[str, Any] = Field(default_factory=dict, description="Used without a template")
    category: Literal["marketing", "transactional"] = "transactional"
    next: StepId | None = None


class EndStep(Strict):
    type: Literal["end"]


Step = Annotated[
    WaitStep
    | WaitForEventStep
    | ConditionStep
    | SplitStep
    | SendStep
    | UpdateTraitStep
    | WebhookStep
    | EndStep,
    Field(discriminator="type"),
]


class EntryRule(Strict):
    policy: Literal["once", "once_per", "every_time"] = "every_time"
    period: Duration | None = None

    _check_period = field_validator("period")(_duration)


class Goal(Strict):
    event: EventName
    where: list[PropertyFilter] = Field(default_factory=list, max_length=20)
    within: Duration = "P7D"
    exit_on_goal: bool = True

    _check_within = field_validator("within")(_duration)


class ExitEvent(Strict):
    event: EventName
    where: list[PropertyFilter] = Field(default_factory=list, max_length=20)


class QuietHours(Strict):
    start: TimeOfDay
    end: TimeOfDay

    _check = field_validator("start", "end")(_time_of_day)


class FrequencyCap(Strict):
    max: int = Field(ge=0, le=1000)
    per: Duration

    _check_per = field_validator("per")(_duration)


class DeliveryRules(Strict):
    """Workspace settings, or a journey's override of them (a field left out is inherited)."""

    quiet_hours: QuietHours | None = None
    frequency_caps: list[FrequencyCap] | None = Field(default=None, max_length=5)
    default_timezone: str | None = Field(default=None, max_length=64)
    spread: Duration | None = Field(default=None, description="Mass triggers spread over this")

    _check_spread = field_validator("spread")(_duration)


class JourneyDefinition(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    trigger: Trigger
    entry: EntryRule = Field(default_factory=EntryRule)
    goal: Goal | None = None
    exit: list[ExitEvent] = Field(default_factory=list, max_length=20)
    holdout_percent: float = Field(default=0, ge=0, lt=100)
    delivery: DeliveryRules | None = None
    start: StepId
    steps: dict[StepId, Step] = Field(min_length=1, max_length=200)


class Problem(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def successors(step: Step) -> list[tuple[str, str | None]]:
    """(field, next step id or None for "the run ends") of every way out of a step."""
    match step:
        case WaitStep() | SendStep() | UpdateTraitStep() | WebhookStep():
            return [("next", step.next)]
        case WaitForEventStep():
            return [("on_event", step.on_event), ("on_timeout", step.on_timeout)]
        case ConditionStep():
            return [("then", step.then), ("else", step.else_)]
        case SplitStep():
            return [(f"branches.{i}.next", b.next) for i, b in enumerate(step.branches)]
        case EndStep():
            return []
    return []


def waits(step: Step) -> bool:
    return isinstance(step, WaitStep | WaitForEventStep)


def validate(definition: JourneyDefinition) -> list[Problem]:
    """Everything wrong with the graph, each pointing at the step and field at fault."""
    problems: list[Problem] = []
    steps = definition.steps
    if definition.start not in steps:
        problems.append(Problem("start", f"names no step: {definition.start!r}"))
    for step_id, step in steps.items():
        for field_name, target in successors(step):
            if target is not None and target not in steps:
                problems.append(Problem(f"steps.{step_id}.{field_name}", f"no step {target!r}"))
        if isinstance(step, WaitStep) and (step.duration is None) == (step.until is None):
            problems.append(Problem(f"steps.{step_id}", "a wait takes a duration or until"))
        if isinstance(step, ConditionStep):
            try:
                conditions.check(step.if_)
            except conditions.InvalidCondition as error:
                where = ".".join(p for p in (f"steps.{step_id}.if", error.path) if p)
                problems.append(Problem(where, error.problem))
    if definition.entry.policy == "once_per" and definition.entry.period is None:
        problems.append(Problem("entry.period", "once_per needs a period such as P1D"))
    if problems:
        return problems
    problems.extend(_reachability(definition))
    problems.extend(_loops_without_wait(definition))
    return problems


def _reachability(definition: JourneyDefinition) -> list[Problem]:
    seen = {definition.start}
    stack = [definition.start]
    while stack:
        for _, target in successors(definition.steps[stack.pop()]):
            if target is not None and target not in seen:
                seen.add(target)
                stack.append(target)
    return [
        Problem(f"steps.{step_id}", "is never reached from start")
        for step_id in definition.steps
        if step_id not in seen
    ]


def _loops_without_wait(definition: JourneyDefinition) -> list[Problem]:
    """A cycle made only of instant steps would run forever at one instant."""
    instant = {i: s for i, s in definition.steps.items() if not waits(s)}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    problems: list[Problem] = []

    def visit(step_id: str) -> None:
        state[step_id] = 1
        for field_name, target in successors(instant[step_id]):
            if target is None or target not in instant:
                continue
            if state.get(target) == 1:
                problems.append(
                    Problem(
                        f"steps.{step_id}.{field_name}", f"loops back to {target!r} with no wait"
                    )
                )
            elif target not in state:
                visit(target)
        state[step_id] = 2

    for step_id in instant:
        if step_id not in state:
            visit(step_id)
    return problems
