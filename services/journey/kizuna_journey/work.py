"""One transaction's worth of journey work for one workspace: what it loaded, what it decided,
and the writes that make the decisions durable together (runs, step log, schedules, outbox).

Runs a customer is in are locked first; new runs are inserted before anything they produced is
kept, so a run another replica created at the same moment never sends twice."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna import topics
from kizuna.envelope import Envelope
from kizuna.outbox import OutboxBatch
from kizuna_journey import journey_events
from kizuna_journey.adapters import results_store, store
from kizuna_journey.adapters.store import ActiveJourney, RunRow, Schedule
from kizuna_journey.domain import clock, conditions, definition, machine, rules
from kizuna_journey.domain.definition import JourneyDefinition
from kizuna_journey.domain.durations import parse_duration, parse_time_of_day
from kizuna_journey.domain.mirror import Mirror

SEND_REQUESTED = "send.requested"
log = structlog.get_logger(__name__)


def run_id_for(workspace_id: str, journey_id: str, customer_id: str, entry_key: str) -> str:
    digest = hashlib.sha256(f"{workspace_id}:{journey_id}:{customer_id}:{entry_key}".encode())
    return f"run_{digest.hexdigest()[:32]}"


def matches(filters: Sequence[definition.PropertyFilter], properties: dict[str, Any]) -> bool:
    return all(
        conditions.compare(properties.get(f.property), f.model_dump(exclude={"property"}))
        for f in filters
    )


def condition_events(journey: JourneyDefinition) -> set[str]:
    names: set[str] = set()
    for step in journey.steps.values():
        if isinstance(step, definition.ConditionStep):
            names |= conditions.events_named(step.if_)
    return names


def winner_tests(journey: JourneyDefinition) -> dict[str, definition.SplitStep]:
    return {
        step_id: step
        for step_id, step in journey.steps.items()
        if isinstance(step, definition.SplitStep) and step.winner is not None
    }


def _has_conditions(journey: JourneyDefinition) -> bool:
    return any(isinstance(step, definition.ConditionStep) for step in journey.steps.values())


@dataclass
class Work:
    conn: AsyncConnection
    workspace_id: str
    now: datetime
    outbox: OutboxBatch
    journeys: list[ActiveJourney] = field(default_factory=list)
    workspace_rules: definition.DeliveryRules | None = None
    mirrors: dict[str, Mirror] = field(default_factory=dict)
    segments: dict[str, set[str]] = field(default_factory=dict)
    live: dict[str, list[RunRow]] = field(default_factory=dict)  # customer → live runs
    entries: dict[tuple[str, str], datetime] = field(default_factory=dict)
    budgets: dict[str, rules.Budget] = field(default_factory=dict)
    event_days: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)  # journey → status
    definitions: dict[tuple[str, int], JourneyDefinition] = field(default_factory=dict)
    changed_runs: dict[str, RunRow] = field(default_factory=dict)
    new_runs: dict[str, RunRow] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    messages: list[tuple[str, str, Envelope]] = field(default_factory=list)  # run, topic, event
    schedules: dict[tuple[str, str, str], Schedule] = field(default_factory=dict)
    unscheduled: dict[tuple[str, str, str], Schedule] = field(default_factory=dict)
    inserted: set[str] = field(default_factory=set)  # new runs that got in, once flushed
    counted: list[tuple[str, str, date, datetime]] = field(default_factory=list)  # events
    winners: dict[tuple[str, int, str], int] = field(default_factory=dict)  # A/B splits decided

    @classmethod
    async def load(
        cls,
        conn: AsyncConnection,
        workspace_id: str,
        customers: Iterable[str],
        now: datetime,
        outbox: OutboxBatch,
        *,
        claimed: Sequence[RunRow] = (),
        lock: bool = False,
    ) -> Work:
        ids = sorted(set(customers))
        work = cls(conn, workspace_id, now, outbox)
        rules_known = False
        if not claimed:  # firing claimed runs starts no new ones
            found_active = await store.active_journeys_and_rules(conn, workspace_id)
            if found_active is not None:
                work.journeys, work.workspace_rules = found_active
                rules_known = True
        if claimed:
            runs = list(claimed)
            # The customer locks serialise every writer of the mirror: no row lock needed.
            work.mirrors = await store.load_mirrors(conn, workspace_id, ids, lock=lock)
        elif lock:
            runs = await store.lock_live_runs(conn, workspace_id, ids)
            work.mirrors = await store.load_mirrors(conn, workspace_id, ids, lock=lock)
        else:
            runs, work.mirrors = await store.lock_live_runs_and_load_mirrors(
                conn, workspace_id, ids
            )
        for run in runs:
            work.live.setdefault(run.customer_id, []).append(run)
        keys = {(run.journey_id, run.version) for run in runs}
        keys |= {(j.journey_id, j.version) for j in work.journeys}
        found = await store.definitions_of(conn, [(workspace_id, j, v) for j, v in keys])
        work.definitions = {(k[1], k[2]): d for k, d in found.items()}
        if work.definitions and not rules_known:
            work.workspace_rules = await store.delivery_rules(conn, workspace_id)
        # Statuses are read when an event reaches a live run; a journey in the active list is
        # active until this transaction ends (it holds the journey's row FOR SHARE).
        work.statuses = {j.journey_id: "active" for j in work.journeys}
        others = {journey for journey, _ in keys} - set(work.statuses)
        if others and not claimed:  # claimed runs' journeys are active and held likewise
            found_statuses = await store.journey_statuses(conn, [(workspace_id, j) for j in others])
            work.statuses |= {journey: status for (_, journey), status in found_statuses.items()}
        tested = [key for key, d in work.definitions.items() if winner_tests(d)]
        work.winners = await results_store.winners(conn, workspace_id, tested)
        if any(_has_conditions(d) for d in work.definitions.values()):  # else never read
            work.segments = await store.segments_of(conn, workspace_id, ids)
        if not claimed and any(
            j.definition.entry.policy != "every_time" for j in work.journeys
        ):  # else never read
            work.entries = await store.entry_history(conn, workspace_id, ids)
        names = set().union(*(condition_events(d) for d in work.definitions.values()))
        work.event_days = await store.event_days(conn, workspace_id, ids, names)
        longest = max(
            (
                rules.resolve(work.workspace_rules, d.delivery).longest_cap
                for d in work.definitions.values()
            ),
            default=timedelta(0),
        )
        sent = await store.marketing_sent(conn, workspace_id, ids, now - longest) if longest else {}
        work.budgets = {c: rules.Budget(sent.get(c, [])) for c in ids}
        return work

    def mirror(self, customer_id: str) -> Mirror:
        return self.mirrors.setdefault(customer_id, Mirror())

    def facts(self, customer_id: str) -> conditions.CustomerFacts:
        mirror = self.mirror(customer_id)
        return conditions.CustomerFacts(
            traits=mirror.traits,
            segments=frozenset(self.segments.get(customer_id, ())),
            rfm=mirror.rfm,
            consent=mirror.consent_status(),
            suppressed=frozenset(mirror.suppressed),
            event_days=self.event_days.get(customer_id, {}),
        )

    def definition_of(self, run: RunRow) -> JourneyDefinition:
        return self.definitions[(run.journey_id, run.version)]

    # Runs

    def enrol(
        self,
        journey: ActiveJourney,
        customer_id: str,
        entry_key: str,
        data: dict[str, Any],
        *,
        trigger_event_id: str | None = None,
    ) -> RunRow | None:
        """Starts a run unless the entry rule or a live run stops it; its journey.entered goes
        before whatever its first steps produce (a journey.completed among them)."""
        if any(run.journey_id == journey.journey_id for run in self.live.get(customer_id, [])):
            return None
        entry = journey.definition.entry
        last = self.entries.get((journey.journey_id, customer_id))
        if last is not None and entry.policy == "once":
            return None
        if (
            last is not None
            and entry.policy == "once_per"
            and entry.period is not None
            and self.now - last < parse_duration(entry.period)
        ):
            return None
        holdout = (
            clock.bucket(f"{journey.journey_id}:{customer_id}") < journey.definition.holdout_percent
        )
        run = RunRow(
            run_id=run_id_for(self.workspace_id, journey.journey_id, customer_id, entry_key),
            workspace_id=self.workspace_id,
            journey_id=journey.journey_id,
            version=journey.version,
            customer_id=customer_id,
            holdout=holdout,
            step=None,
            visits={},
            data=data,
            due_at=None,
            waiting_for=None,
            entered_at=self.now,
        )
        self.definitions[(journey.journey_id, journey.version)] = journey.definition
        self.statuses[journey.journey_id] = "active"
        self.new_runs[run.run_id] = run
        self.live.setdefault(customer_id, []).append(run)
        self.entries[(journey.journey_id, customer_id)] = self.now
        first = len(self.messages)
        self.advance(run, "start")
        entered = journey_events.entered(run, journey.definition, trigger_event_id)
        self.messages.insert(first, (run.run_id, topics.JOURNEY_EVENTS, entered))
        return run

    def advance(self, run: RunRow, resume: machine.Resume) -> None:
        journey = self.definition_of(run)
        delivery = rules.resolve(self.workspace_rules, journey.delivery)
        facts = self.facts(run.customer_id)
        situation = machine.Situation(
            facts,
            delivery,
            self.budgets.setdefault(run.customer_id, rules.Budget()),
            self.now,
            {
                step: branch
                for (journey_id, version, step), branch in self.winners.items()
                if journey_id == run.journey_id and version == run.version
            },
        )
        state = machine.Run(
            run.run_id,
            run.journey_id,
            run.version,
            run.customer_id,
            run.holdout,
            run.step,
            run.visits,
            run.data,
        )
        try:
            outcome = machine.advance(journey, state, situation, resume)
        except Exception as error:  # one bad run must not hold back the others
            log.exception("journey_run_failed", run_id=run.run_id, journey_id=run.journey_id)
            self.end(run, "failed", f"error: {type(error).__name__}")
            return
        run.step = outcome.run.step
        run.visits = dict(outcome.run.visits)
        run.due_at = outcome.due_at
        run.waiting_for = outcome.waiting_for
        for executed in outcome.executed:
            self._log(run, executed)
        for send in outcome.sends:
            self.messages.append((run.run_id, topics.SEND_REQUESTS, self._send_request(run, send)))
        for update in outcome.trait_updates:
            self.mirror(run.customer_id).traits.update(update.traits)  # seen by later steps
            self.messages.append((run.run_id, topics.RAW_EVENTS, self._identify(run, update)))
        if outcome.ended is not None:
            self.end(run, "completed", outcome.ended)
        else:
            self._changed(run)

    def end(self, run: RunRow, status: journey_events.Ending, reason: str) -> None:
        if run.status != "active":  # ended already: one journey.completed per run
            return
        run.status = status
        run.end_reason = reason
        run.ended_at = self.now
        run.due_at = None
        run.waiting_for = None
        runs = self.live.get(run.customer_id, [])
        if run in runs:
            runs.remove(run)
        self._changed(run)
        completed = journey_events.completed(
            run, self.definitions.get((run.journey_id, run.version))
        )
        self.messages.append((run.run_id, topics.JOURNEY_EVENTS, completed))

    def converted(self, run: RunRow, event: Envelope, properties: dict[str, Any]) -> None:
        """Marks the run converted by ``event`` (once) and logs the conversion with its value,
        for results: ``revenue``, else ``total``, else ``value`` of the goal event."""
        if run.converted_at is not None:
            return
        run.converted_at = event.occurred_at
        self._changed(run)
        value = next(
            (
                float(v)
                for k in ("revenue", "total", "value")
                if isinstance(v := properties.get(k), int | float) and not isinstance(v, bool)
            ),
            None,
        )
        self.steps.append(
            {
                "execution_id": f"{run.run_id}:goal",
                "outcome": "converted",
                "workspace_id": self.workspace_id,
                "journey_id": run.journey_id,
                "version": run.version,
                "run_id": run.run_id,
                "customer_id": run.customer_id,
                "step_id": "(goal)",
                "step_type": "goal",
                "category": None,
                "detail": {
                    "event_id": event.id,
                    "value": value,
                    "currency": properties.get("currency"),
                },
                "at": event.occurred_at,
            }
        )

    def touched(self, run: RunRow) -> None:
        self._changed(run)

    def _changed(self, run: RunRow) -> None:
        if run.run_id not in self.new_runs:
            self.changed_runs[run.run_id] = run

    def _log(self, run: RunRow, executed: machine.Executed) -> None:
        self.steps.append(
            {
                "execution_id": executed.execution_id,
                "outcome": executed.outcome,
                "workspace_id": self.workspace_id,
                "journey_id": run.journey_id,
                "version": run.version,
                "run_id": run.run_id,
                "customer_id": run.customer_id,
                "step_id": executed.step_id,
                "step_type": executed.step_type,
                "category": executed.detail.get("category"),
                "detail": dict(executed.detail),
                "at": self.now,
            }
        )

    def _snapshot(self, customer_id: str) -> dict[str, Any]:
        """What the journey knows of the customer, for the template and the address."""
        mirror = self.mirror(customer_id)
        return {"traits": dict(mirror.traits), "rfm": dict(mirror.rfm)}

    def _send_request(self, run: RunRow, send: machine.SendRequest) -> Envelope:
        return Envelope.new(
            SEND_REQUESTED,
            self.workspace_id,
            run.customer_id,
            {
                "send_id": send.send_id,
                "customer_id": run.customer_id,
                "channel": send.channel,
                "category": send.category,
                "template": send.template,
                "url": send.url,
                "data": dict(send.data),
                "customer": self._snapshot(run.customer_id),
                "journey_id": run.journey_id,
                "journey_version": run.version,
                "run_id": run.run_id,
                "step_id": send.step_id,
                "execution_id": send.execution_id,
            },
            occurred_at=self.now,
            event_id=send.send_id,
        )

    def _identify(self, run: RunRow, update: machine.TraitUpdate) -> Envelope:
        event_id = f"journey-trait:{update.execution_id}"
        stamp = self.now.isoformat()
        return Envelope.new(
            "identify",
            self.workspace_id,
            run.customer_id,
            {
                "type": "identify",
                "messageId": event_id,
                "customerId": run.customer_id,
                "traits": dict(update.traits),
                "timestamp": stamp,
                "receivedAt": stamp,
                "context": {"library": {"name": "kizuna-journey"}, "journey_id": run.journey_id},
            },
            occurred_at=self.now,
            event_id=event_id,
        )

    # Schedules

    def schedule(self, item: Schedule) -> None:
        key = (item.journey_id, item.customer_id, item.kind)
        self.unscheduled.pop(key, None)
        self.schedules[key] = item

    def unschedule(self, item: Schedule) -> None:
        key = (item.journey_id, item.customer_id, item.kind)
        self.schedules.pop(key, None)
        self.unscheduled[key] = item

    def schedule_date(self, journey: ActiveJourney, customer_id: str) -> None:
        trigger = journey.definition.trigger
        assert isinstance(trigger, definition.DateTrigger)
        traits = self.mirror(customer_id).traits
        day = clock.parse_date(traits.get(trigger.trait))
        item = Schedule(self.workspace_id, journey.journey_id, customer_id, "date", self.now, {})
        if day is None:
            self.unschedule(item)
            return
        delivery = rules.resolve(self.workspace_rules, journey.definition.delivery)
        tz = clock.zone(traits.get("timezone"), delivery.default_timezone)
        due = clock.next_anniversary(
            self.now, day, parse_time_of_day(trigger.at), tz, trigger.offset_days
        )
        offset = clock.spread_offset(
            f"{journey.journey_id}:{customer_id}", parse_duration(trigger.spread)
        )
        self.schedule(replace(item, due_at=due + offset, data={"day": due.date().isoformat()}))

    # Flush

    async def flush(self) -> None:
        """Writes everything decided and stages what it publishes in the outbox batch, which
        is written at the end of the transaction."""
        # New runs first (the ones another replica started at the same moment are lost, and so
        # is everything they produced), then the step log and event counts, in one statement.
        inserted = await store.insert_new_runs(
            self.conn, list(self.new_runs.values()), self.steps, self.counted, self.workspace_id
        )
        self.inserted = inserted
        lost = set(self.new_runs) - inserted
        await store.save_runs(self.conn, list(self.changed_runs.values()))
        by_topic: dict[str, list[Envelope]] = {}
        for run_id, topic, event in self.messages:
            if run_id not in lost:
                by_topic.setdefault(topic, []).append(event)
        for topic, events in by_topic.items():
            self.outbox.add(topic, events)
        await store.delete_schedules(self.conn, list(self.unscheduled.values()))
        await store.upsert_schedules(self.conn, list(self.schedules.values()))
        await store.save_mirrors(
            self.conn, self.workspace_id, {c: m for c, m in self.mirrors.items() if m.dirty}
        )
