"""Journey use cases, each inside the caller's transaction: events and segment changes move
runs and start new ones, merges and erasures move or cancel them, due runs and due trigger
schedules fire."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna import topics
from kizuna.bus import PoisonMessage
from kizuna.envelope import Envelope
from kizuna.outbox import Outbox, OutboxBatch
from kizuna_journey import journey_events
from kizuna_journey.adapters import results_store, store
from kizuna_journey.adapters.store import ActiveJourney, Schedule
from kizuna_journey.domain import clock, definition, mirror, results
from kizuna_journey.domain.durations import parse_duration
from kizuna_journey.work import Work, matches, winner_tests

SEGMENT_TYPES = frozenset({"segment.entered", "segment.exited"})
BROADCAST_CHUNK = 5000


def _properties(event: Envelope) -> dict[str, Any]:
    value = event.payload.get("properties")
    return value if isinstance(value, dict) else {}


def track_name(event: Envelope) -> str | None:
    name = event.payload.get("event")
    return name if event.type == "track" and isinstance(name, str) else None


async def on_events(
    conn: AsyncConnection, events: Sequence[Envelope], now: datetime, outbox: OutboxBatch
) -> None:
    """Resolved events and segment changes, in bus order per customer."""
    by_workspace: dict[str, list[Envelope]] = defaultdict(list)
    for event in events:
        by_workspace[event.workspace_id].append(event)
    for workspace_id, items in by_workspace.items():
        fresh_ids = await store.first_new_events_locked(
            conn, workspace_id, [(e.id, e.customer_key) for e in items]
        )  # and the new events' customers locked
        fresh: list[Envelope] = []
        for event in items:
            if event.id in fresh_ids:
                fresh_ids.discard(event.id)
                fresh.append(event)
        if not fresh:
            continue
        customers = {e.customer_key for e in fresh}
        newest_changes = await _record_segment_changes(conn, workspace_id, fresh)
        work = await Work.load(conn, workspace_id, customers, now, outbox)
        counted = work.counted  # written with the runs and steps
        for event in fresh:
            if event.type in SEGMENT_TYPES:
                if event.id in newest_changes:
                    _on_segment_change(work, event)
                continue
            name = track_name(event)
            if name is not None:
                counted.append(
                    (event.customer_key, name, event.occurred_at.date(), event.occurred_at)
                )
            decide_event(work, event, name)
        await _record_goals_after_end(work, fresh)
        await work.flush()


async def _record_segment_changes(
    conn: AsyncConnection, workspace_id: str, events: Sequence[Envelope]
) -> set[str]:
    changes = [
        (
            event.customer_key,
            event.payload["segment_id"],
            event.type == "segment.entered",
            event.occurred_at,
            event.id,
        )
        for event in events
        if event.type in SEGMENT_TYPES and isinstance(event.payload.get("segment_id"), str)
    ]
    return await store.record_segment_changes(conn, workspace_id, changes)


def _on_segment_change(work: Work, event: Envelope) -> None:
    customer_id = event.customer_key
    segment_id = str(event.payload["segment_id"])
    entered = event.type == "segment.entered"
    members = work.segments.setdefault(customer_id, set())
    if entered:
        members.add(segment_id)
    else:
        members.discard(segment_id)
    scores = event.payload.get("scores")
    if event.payload.get("kind") == "rfm" and entered and isinstance(scores, dict):
        kept = work.mirror(customer_id)
        kept.rfm = {k: int(v) for k, v in scores.items() if isinstance(v, int)}
        kept.dirty = True
    for journey in work.journeys:
        trigger = journey.definition.trigger
        if (
            isinstance(trigger, definition.SegmentTrigger)
            and trigger.names(segment_id)
            and trigger.on == ("entered" if entered else "exited")
        ):
            work.enrol(
                journey,
                customer_id,
                f"segment:{event.id}",
                dict(event.payload),
                trigger_event_id=event.id,
            )


def decide_event(work: Work, event: Envelope, name: str | None) -> None:
    customer_id = event.customer_key
    changed_traits = mirror.observe(work.mirror(customer_id), event)
    properties = _properties(event)
    if name is not None:
        for run in list(work.live.get(customer_id, [])):
            _on_run_event(work, run, name, properties, event)
    for journey in work.journeys:
        trigger = journey.definition.trigger
        if isinstance(trigger, definition.EventTrigger):
            if trigger.names(name) and matches(trigger.where, properties):
                work.enrol(
                    journey,
                    customer_id,
                    f"event:{event.id}",
                    _trigger_data(event),
                    trigger_event_id=event.id,
                )
        elif isinstance(trigger, definition.InactivityTrigger) and name == trigger.event:
            due = event.occurred_at + parse_duration(trigger.for_)
            work.schedule(
                Schedule(work.workspace_id, journey.journey_id, customer_id, "inactivity", due, {})
            )
        elif isinstance(trigger, definition.DateTrigger) and (
            {trigger.trait, "timezone"} & changed_traits
        ):
            work.schedule_date(journey, customer_id)


def _trigger_data(event: Envelope) -> dict[str, Any]:
    return {"event": event.payload.get("event"), "properties": _properties(event)}


def _on_run_event(
    work: Work, run: store.RunRow, name: str, properties: dict[str, Any], event: Envelope
) -> None:
    journey = work.definition_of(run)
    goal = journey.goal
    if (
        goal is not None
        and goal.event == name
        and matches(goal.where, properties)
        and event.occurred_at - run.entered_at <= parse_duration(goal.within)
    ):
        work.converted(run, event, properties)
        work.touched(run)
        if goal.exit_on_goal:
            work.end(run, "goal", "goal")
            return
    if any(e.event == name and matches(e.where, properties) for e in journey.exit):
        work.end(run, "exited", f"exit:{name}")
        return
    if work.statuses.get(run.journey_id) != "active" or run.waiting_for != name:
        return
    step = journey.steps.get(run.step or "")
    if isinstance(step, definition.WaitForEventStep) and matches(step.where, properties):
        work.advance(run, "event")


async def _record_goals_after_end(work: Work, events: Sequence[Envelope]) -> None:
    """A goal reached after the run ended (it completed its steps) still counts as a conversion
    if it falls within the goal's window."""
    goal_events = {j.definition.goal.event for j in work.journeys if j.definition.goal is not None}
    hits = [e for e in events if track_name(e) in goal_events]
    if not hits:
        return
    longest = max(
        parse_duration(j.definition.goal.within) for j in work.journeys if j.definition.goal
    )
    runs = await store.recent_runs(
        work.conn, work.workspace_id, sorted({e.customer_key for e in hits}), work.now - longest
    )
    for run in runs:
        journey = next((j for j in work.journeys if j.journey_id == run.journey_id), None)
        goal = journey.definition.goal if journey else None
        for event in hits:
            if (
                goal is not None
                and event.customer_key == run.customer_id
                and track_name(event) == goal.event
                and matches(goal.where, _properties(event))
                and run.entered_at
                <= event.occurred_at
                <= run.entered_at + parse_duration(goal.within)
            ):
                work.converted(run, event, _properties(event))
                work.changed_runs[run.run_id] = run
                break


# Timers


async def fire_due_runs(
    conn: AsyncConnection, now: datetime, limit: int, outbox: OutboxBatch
) -> int:
    """Claims due runs (skipping those another replica holds, and those whose customer another
    transaction is working on) and moves them on; returns how many it moved."""
    claimed = await store.claim_due_runs(conn, now, limit)
    by_workspace: dict[str, list[store.RunRow]] = defaultdict(list)
    for run in claimed:
        by_workspace[run.workspace_id].append(run)
    fired = 0
    for workspace_id, claimed_here in by_workspace.items():
        locked = await store.try_lock_customers(
            conn, workspace_id, [r.customer_id for r in claimed_here]
        )
        runs = [run for run in claimed_here if run.customer_id in locked]
        fired += len(runs)
        if not runs:
            continue
        work = await Work.load(
            conn, workspace_id, [r.customer_id for r in runs], now, outbox, claimed=runs, lock=False
        )
        await _decide_winners(work, runs)
        for run in runs:
            work.advance(run, "timer")
        await work.flush()
    return fired


async def _decide_winners(work: Work, runs: Sequence[store.RunRow]) -> None:
    """Runs held at an A/B split wake up when the test has run its time: the first to wake
    decides the winner from the test share's figures (once for every replica)."""
    for run in runs:
        journey = work.definition_of(run)
        step = winner_tests(journey).get(run.step or "")
        key = (run.journey_id, run.version, run.step or "")
        if step is None or step.winner is None or key in work.winners:
            continue
        figures = await results_store.test_figures(
            work.conn, work.workspace_id, run.journey_id, run.version, key[2], step.winner.metric
        )
        index, report = results.choose_winner(
            [b.name or str(i) for i, b in enumerate(step.branches)],
            [(f.branch, f.runs, f.successes) for f in figures],
            step.winner.metric,
        )
        work.winners[key] = await results_store.record_winner(
            work.conn,
            work.workspace_id,
            run.journey_id,
            run.version,
            key[2],
            index,
            report,
            work.now,
        )


async def fire_due_schedules(
    conn: AsyncConnection, now: datetime, limit: int, outbox: OutboxBatch
) -> int:
    claimed = await store.claim_due_schedules(conn, now, limit)
    by_workspace: dict[str, list[Schedule]] = defaultdict(list)
    for item in claimed:
        by_workspace[item.workspace_id].append(item)
    fired = 0
    for workspace_id, claimed_here in by_workspace.items():
        locked = await store.try_lock_customers(
            conn, workspace_id, [s.customer_id for s in claimed_here if s.customer_id]
        )
        items = [s for s in claimed_here if not s.customer_id or s.customer_id in locked]
        fired += len(items)
        customers = [s.customer_id for s in items if s.customer_id]
        work = await Work.load(conn, workspace_id, customers, now, outbox)
        journeys = {j.journey_id: j for j in work.journeys}
        for item in items:
            journey = journeys.get(item.journey_id)
            work.unschedule(item)
            if journey is not None:
                await _fire_schedule(work, journey, item)
        await work.flush()
    return fired


async def _fire_schedule(work: Work, journey: ActiveJourney, item: Schedule) -> None:
    trigger = journey.definition.trigger
    if item.kind == "date" and isinstance(trigger, definition.DateTrigger):
        work.enrol(journey, item.customer_id, f"date:{item.data.get('day')}", {"date": item.data})
        work.schedule_date(journey, item.customer_id)
    elif item.kind == "inactivity" and isinstance(trigger, definition.InactivityTrigger):
        span = parse_duration(trigger.for_)
        last = await store.last_event_at(
            work.conn, work.workspace_id, item.customer_id, trigger.event
        )
        if last is None:
            return
        if last + span <= work.now:
            work.enrol(
                journey,
                item.customer_id,
                f"inactive:{last.isoformat()}",
                {"last_at": last.isoformat()},
            )
        else:
            work.schedule(replace_due(item, last + span))
    elif item.kind == "broadcast" and isinstance(trigger, definition.BroadcastTrigger):
        await _expand_broadcast(work, journey, trigger, item)
    elif item.kind == "broadcast_entry":
        work.enrol(journey, item.customer_id, f"broadcast:{item.data.get('occurrence')}", {})


def replace_due(item: Schedule, due_at: datetime) -> Schedule:
    return Schedule(
        item.workspace_id, item.journey_id, item.customer_id, item.kind, due_at, item.data
    )


async def _expand_broadcast(
    work: Work, journey: ActiveJourney, trigger: definition.BroadcastTrigger, item: Schedule
) -> None:
    """One entry per segment member: at the broadcast time, or at its wall-clock time in each
    member's timezone, spread so a large segment leaves in a stream."""
    occurrence = datetime.fromisoformat(str(item.data.get("occurrence", item.due_at.isoformat())))
    spread = parse_duration(trigger.spread)
    after = ""
    while True:
        members = await store.segment_members(
            work.conn, work.workspace_id, trigger.segment, after, BROADCAST_CHUNK
        )
        if not members:
            break
        after = members[-1]
        mirrors = (
            await store.load_mirrors(work.conn, work.workspace_id, members)
            if trigger.local_time
            else {}
        )
        entries = []
        for customer_id in members:
            due = occurrence
            if trigger.local_time:
                traits = mirrors.get(customer_id, mirror.Mirror()).traits
                tz = clock.zone(traits.get("timezone"), "UTC")
                wall = occurrence.astimezone(trigger.at.tzinfo).replace(tzinfo=None)
                due = clock.at_local(wall.date(), wall.time(), tz)
            due += clock.spread_offset(f"{journey.journey_id}:{customer_id}", spread)
            entries.append(
                Schedule(
                    work.workspace_id,
                    journey.journey_id,
                    customer_id,
                    "broadcast_entry",
                    due,
                    {"occurrence": occurrence.isoformat()},
                )
            )
        await store.upsert_schedules(work.conn, entries)
    if trigger.repeat is not None:
        following = occurrence + parse_duration(trigger.repeat)
        work.schedule(
            _broadcast_schedule(work.workspace_id, journey.journey_id, trigger, following)
        )


EARLIEST_ZONE = ZoneInfo("Etc/GMT-14")  # UTC+14: where a wall-clock time comes first


def _broadcast_schedule(
    workspace_id: str, journey_id: str, trigger: definition.BroadcastTrigger, occurrence: datetime
) -> Schedule:
    """The broadcast's members are listed when the first of them is due: at the occurrence,
    or, at local time, when its wall-clock time comes in the earliest timezone."""
    due = occurrence
    if trigger.local_time:
        wall = occurrence.astimezone(trigger.at.tzinfo).replace(tzinfo=None)
        due = clock.at_local(wall.date(), wall.time(), EARLIEST_ZONE)
    return Schedule(
        workspace_id, journey_id, "", "broadcast", due, {"occurrence": occurrence.isoformat()}
    )


# Activation: schedules for customers the journey already knows


async def seed_schedules(
    conn: AsyncConnection, workspace_id: str, journey_id: str, now: datetime, outbox: OutboxBatch
) -> None:
    work = await Work.load(conn, workspace_id, [], now, outbox)
    journey = next((j for j in work.journeys if j.journey_id == journey_id), None)
    if journey is None:
        return
    trigger = journey.definition.trigger
    if isinstance(trigger, definition.BroadcastTrigger):
        first = trigger.at
        if trigger.repeat is not None:
            step = parse_duration(trigger.repeat)
            while first < now - timedelta(minutes=1):
                first += step
        if first >= now - timedelta(minutes=1):
            work.schedule(_broadcast_schedule(workspace_id, journey_id, trigger, first))
    elif isinstance(trigger, definition.InactivityTrigger):
        await conn.execute(
            sa.text(
                "INSERT INTO jr_schedules (workspace_id, journey_id, customer_id, kind, due_at)"
                " SELECT :ws, :j, customer_id, 'inactivity', greatest(max(last_at) + :span, :now)"
                " FROM jr_customer_events WHERE workspace_id = :ws AND event = :e"
                " GROUP BY customer_id ON CONFLICT DO NOTHING"
            ),
            {
                "ws": workspace_id,
                "j": journey_id,
                "e": trigger.event,
                "span": parse_duration(trigger.for_),
                "now": now,
            },
        )
    elif isinstance(trigger, definition.DateTrigger):
        rows = await conn.execute(
            sa.text(
                "SELECT customer_id FROM jr_customers WHERE workspace_id = :ws AND traits ? :t"
            ),
            {"ws": workspace_id, "t": trigger.trait},
        )
        ids = [row.customer_id for row in rows.all()]
        for start in range(0, len(ids), BROADCAST_CHUNK):
            chunk = ids[start : start + BROADCAST_CHUNK]
            work.mirrors.update(await store.load_mirrors(conn, workspace_id, chunk))
            for customer_id in chunk:
                work.schedule_date(journey, customer_id)
    await work.flush()


async def enrol_customers(
    conn: AsyncConnection,
    workspace_id: str,
    journey_id: str,
    customers: Sequence[str],
    data: dict[str, Any],
    request_id: str,
    now: datetime,
    outbox: OutboxBatch,
) -> list[str]:
    """The API trigger: returns the run ids started (a customer already in, or stopped by the
    entry rule, gets none). The same request id enrols nobody twice."""
    await store.lock_customers(conn, workspace_id, customers)
    work = await Work.load(conn, workspace_id, customers, now, outbox)
    journey = next((j for j in work.journeys if j.journey_id == journey_id), None)
    if journey is None:
        return []
    started = []
    for customer_id in dict.fromkeys(customers):
        run = work.enrol(journey, customer_id, f"api:{request_id}", dict(data))
        if run is not None:
            started.append(run.run_id)
    await work.flush()
    return [run_id for run_id in started if run_id in work.inserted]


# Ended outside the state machine: archived journeys, merged customers


async def _completed(conn: AsyncConnection, runs: Sequence[store.RunRow]) -> list[Envelope]:
    found = await store.definitions_of(
        conn, {(run.workspace_id, run.journey_id, run.version) for run in runs}
    )
    return [
        journey_events.completed(run, found.get((run.workspace_id, run.journey_id, run.version)))
        for run in runs
    ]


async def cancel_journey_runs(
    conn: AsyncConnection, workspace_id: str, journey_id: str, now: datetime, outbox: Outbox
) -> bool:
    """Cancels every live run of the journey (archived), a chunk per statement, each chunk's
    journey.completed in one write to the outbox table (not a batch: an archive may end
    millions of runs); returns whether any was cancelled."""
    after, published = "", False
    while True:
        ids = await store.live_run_ids(conn, workspace_id, journey_id, after, BROADCAST_CHUNK)
        if not ids:
            return published
        after = ids[-1]
        cancelled = await store.cancel_runs(conn, ids, "archived", now)
        await outbox.add(conn, topics.JOURNEY_EVENTS, await _completed(conn, cancelled))
        published |= bool(cancelled)


# Lifecycle


async def on_lifecycle(
    conn: AsyncConnection, events: Sequence[Envelope], now: datetime, outbox: OutboxBatch
) -> None:
    """Merges and erasures; stages journey.completed for the runs a merge cancelled. An
    erased customer's runs are deleted, not ended: nothing is published."""
    cancelled: list[store.RunRow] = []
    for event in events:
        payload = event.payload
        if event.type == "customer.merged":
            absorbed, survivor = payload.get("absorbed_id"), payload.get("survivor_id")
            if not isinstance(absorbed, str) or not isinstance(survivor, str):
                raise PoisonMessage("customer.merged needs absorbed_id and survivor_id")
            cancelled += await _merge(conn, event.workspace_id, absorbed, survivor, now)
        elif event.type == "customer.erased":
            erased, earlier = payload.get("customer_id"), payload.get("absorbed_ids") or []
            if not isinstance(erased, str) or not isinstance(earlier, list):
                raise PoisonMessage("customer.erased needs customer_id and absorbed_ids")
            gone = [erased, *map(str, earlier)]
            await _erase(conn, event.workspace_id, gone)
            cancelled = [run for run in cancelled if run.customer_id not in gone]
    outbox.add(topics.JOURNEY_EVENTS, await _completed(conn, cancelled))


async def _merge(
    conn: AsyncConnection, workspace_id: str, absorbed: str, survivor: str, now: datetime
) -> list[store.RunRow]:
    """Moves the absorbed customer's state to the survivor; returns the absorbed customer's
    runs it cancelled (the survivor's own live run of a journey wins), now the survivor's."""
    if absorbed == survivor:
        return []
    params = {"ws": workspace_id, "a": absorbed, "s": survivor}
    await store.lock_customers(conn, workspace_id, [absorbed, survivor])
    mirrors = await store.load_mirrors(conn, workspace_id, sorted([absorbed, survivor]), lock=True)
    if absorbed in mirrors:
        kept = mirrors.get(survivor, mirror.Mirror())
        kept.absorb(mirrors[absorbed])
        await store.save_mirrors(conn, workspace_id, {survivor: kept})
    cancelled = await store.cancel_absorbed_runs(conn, workspace_id, absorbed, survivor, now)
    statements = [
        "UPDATE jr_runs SET customer_id = :s WHERE workspace_id = :ws AND customer_id = :a",
        "UPDATE jr_steps SET customer_id = :s WHERE workspace_id = :ws AND customer_id = :a",
        "INSERT INTO jr_segments (workspace_id, customer_id, segment_id, member, changed_at,"
        " event_id) SELECT workspace_id, :s, segment_id, member, changed_at, event_id"
        " FROM jr_segments WHERE workspace_id = :ws AND customer_id = :a"
        " ON CONFLICT (workspace_id, customer_id, segment_id) DO UPDATE SET"
        " member = excluded.member, changed_at = excluded.changed_at, event_id = excluded.event_id"
        " WHERE (jr_segments.changed_at, jr_segments.event_id)"
        " < (excluded.changed_at, excluded.event_id)",
        "INSERT INTO jr_customer_events (workspace_id, customer_id, event, day, count, last_at)"
        " SELECT workspace_id, :s, event, day, count, last_at FROM jr_customer_events"
        " WHERE workspace_id = :ws AND customer_id = :a"
        " ON CONFLICT (workspace_id, customer_id, event, day) DO UPDATE SET"
        " count = jr_customer_events.count + excluded.count,"
        " last_at = greatest(jr_customer_events.last_at, excluded.last_at)",
        "INSERT INTO jr_schedules (workspace_id, journey_id, customer_id, kind, due_at, data)"
        " SELECT workspace_id, journey_id, :s, kind, due_at, data FROM jr_schedules"
        " WHERE workspace_id = :ws AND customer_id = :a ON CONFLICT DO NOTHING",
    ]
    for statement in statements:
        await conn.execute(sa.text(statement), params)
    await _delete_customer_state(conn, workspace_id, [absorbed], keep_runs=True)
    return [replace(run, customer_id=survivor) for run in cancelled]


async def _erase(conn: AsyncConnection, workspace_id: str, ids: Sequence[str]) -> None:
    await store.lock_customers(conn, workspace_id, ids)
    await _delete_customer_state(conn, workspace_id, ids, keep_runs=False)


async def _delete_customer_state(
    conn: AsyncConnection, workspace_id: str, ids: Sequence[str], *, keep_runs: bool
) -> None:
    tables = ["jr_customers", "jr_segments", "jr_customer_events", "jr_schedules"]
    if not keep_runs:
        tables += ["jr_steps", "jr_runs"]
    for table in tables:
        await conn.execute(
            sa.text(
                f"DELETE FROM {table} WHERE workspace_id = :ws"  # noqa: S608
                " AND customer_id = ANY(CAST(:ids AS text[]))"
            ),
            {"ws": workspace_id, "ids": list(ids)},
        )
