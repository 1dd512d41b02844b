"""journey.entered and journey.completed on journey-events, on real PostgreSQL (and Kafka where
marked): order, outcomes, holdout, and the same ids however often a decision is made."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import event as sa_event

from kizuna import topics
from kizuna.db import driver_connection
from kizuna.envelope import Envelope
from kizuna.outbox import OutboxBatch
from kizuna_journey import handlers
from tests.integration.journey.conftest import JourneyApp, nudge_many

ENTERED, COMPLETED = "journey.entered", "journey.completed"


def promo(**extra: Any) -> dict[str, Any]:
    """A/B split at entry, an hour's wait, one mail."""
    return {
        "name": "Promo",
        "trigger": {"type": "event", "event": "Promo Requested"},
        "start": "ab",
        "steps": {
            "ab": {
                "type": "split",
                "branches": [
                    {"weight": 1, "next": "wait", "name": "A"},
                    {"weight": 1, "next": "wait", "name": "B"},
                ],
            },
            "wait": {"type": "wait", "duration": "PT1H", "next": "mail"},
            "mail": {"type": "send", "channel": "email", "template": "promo"},
        },
        **extra,
    }


def instant(**extra: Any) -> dict[str, Any]:
    """One mail at once: the run enters and ends in the same transaction."""
    return {
        "name": "Instant",
        "trigger": {"type": "event", "event": "Promo Requested"},
        "start": "mail",
        "steps": {"mail": {"type": "send", "channel": "email", "template": "promo"}},
        **extra,
    }


def of(events: list[Envelope], customer: str) -> list[Envelope]:
    return [e for e in events if e.customer_key == customer]


async def test_a_completed_run_publishes_entered_then_completed(journey_app: JourneyApp) -> None:
    app = journey_app
    journey_id = await app.create(promo())
    await app.identify("e1", email="e1@example.com")
    trigger = app.event("e1", "track", "Promo Requested")
    await app.send(trigger)
    entered_at = app.clock.now
    await app.tick(minutes=61)
    ended_at = app.clock.now

    [run] = await app.runs("e1")
    assert (run["status"], run["end_reason"]) == ("completed", "completed")
    [split] = [s for s in await app.steps("e1") if s["step_id"] == "ab"]
    run_id = run["run_id"]
    events = of(await app.journey_events(at_least=2), "e1")
    assert [(e.type, e.id) for e in events] == [
        (ENTERED, f"journey-entered:{run_id}"),
        (COMPLETED, f"journey-completed:{run_id}"),
    ]
    entered, completed = events
    identity = {
        "journey_id": journey_id,
        "journey_version": 1,
        "run_id": run_id,
        "customer_id": "e1",
        "holdout": False,
        "variant": split["detail"]["branch"],
    }
    assert identity["variant"] in {"A", "B"}
    assert entered.payload == {
        **identity,
        "trigger_event_id": trigger.id,
        "entered_at": entered_at.isoformat(),
    }
    assert completed.payload == {
        **identity,
        "outcome": "completed",
        "reason": "completed",
        "goal_met": False,
        "converted_at": None,
        "entered_at": entered_at.isoformat(),
        "ended_at": ended_at.isoformat(),
        "steps_taken": 3,  # ab, wait, mail
    }
    assert (entered.occurred_at, completed.occurred_at) == (entered_at, ended_at)
    assert run["ended_at"] == ended_at  # the journey's clock, in the row as on the bus


async def test_a_goal_exit_completes_with_outcome_goal(journey_app: JourneyApp) -> None:
    app = journey_app
    await app.from_template("cart-abandonment", holdout_percent=0)
    await app.identify("g1", email="g1@example.com")
    await app.track("g1", "Checkout Started")
    await app.tick(minutes=30)
    await app.track("g1", "Order Completed", order_id="o1", total=30)

    [run] = await app.runs("g1")
    assert run["status"] == "goal"
    events = of(await app.journey_events(at_least=2), "g1")
    assert [e.type for e in events] == [ENTERED, COMPLETED]
    completed = events[1].payload
    assert (completed["outcome"], completed["reason"], completed["goal_met"]) == (
        "goal",
        "goal",
        True,
    )
    assert completed["converted_at"] == run["converted_at"].isoformat()
    assert completed["ended_at"] == app.clock.now.isoformat()
    assert completed["variant"] is None  # no split in this journey


async def test_a_holdout_customers_entered_says_holdout(pg_journey_app: JourneyApp) -> None:
    app = pg_journey_app
    await app.create(instant(holdout_percent=50))
    customers = [f"h{i}" for i in range(20)]
    for customer in customers:
        await app.identify(customer, email=f"{customer}@example.com")
        await app.track(customer, "Promo Requested")
    held = {c: (await app.runs(c))[0]["holdout"] for c in customers}
    assert set(held.values()) == {True, False}

    events = await app.journey_events(at_least=2 * len(customers))
    for customer in customers:
        entered, completed = of(events, customer)  # ended in the transaction it entered in
        assert (entered.type, completed.type) == (ENTERED, COMPLETED)
        assert entered.payload["holdout"] is held[customer]
        assert completed.payload["holdout"] is held[customer]
        assert completed.payload["outcome"] == "completed"


async def test_a_redelivered_trigger_starts_no_second_run_nor_event(
    pg_journey_app: JourneyApp,
) -> None:
    app = pg_journey_app
    await app.from_template("cart-abandonment", holdout_percent=0)
    await app.identify("r1", email="r1@example.com")
    event = app.event("r1", "track", "Checkout Started")
    await app.send(event)
    await app.send(event)

    [run] = await app.runs("r1")
    events = await app.journey_events(at_least=1, settle=1.0)
    assert [(e.type, e.id) for e in events] == [(ENTERED, f"journey-entered:{run['run_id']}")]
    assert events[0].payload["trigger_event_id"] == event.id


async def test_a_replayed_decision_publishes_the_same_ids(pg_journey_app: JourneyApp) -> None:
    app = pg_journey_app
    await app.create(instant())
    await app.identify("p1", email="p1@example.com")
    event = app.event("p1", "track", "Promo Requested")
    journeys = app.journeys
    async with journeys.engine.connect() as conn:  # decided, then lost before the commit
        transaction = await conn.begin()
        later = app.clock.now.replace(minute=7)
        batch = OutboxBatch()
        await handlers.on_events(conn, [event], later, batch)
        await journeys.outbox.write(conn, batch)
        first_ids = list(batch.by_topic[topics.JOURNEY_EVENTS])
        await transaction.rollback()
    await app.send(event)  # decided again, at another time

    [run] = await app.runs("p1")
    expected = [f"journey-entered:{run['run_id']}", f"journey-completed:{run['run_id']}"]
    assert first_ids == expected
    assert [e.id for e in await app.journey_events(at_least=2, settle=1.0)] == expected


async def test_exit_merge_and_archive_end_runs_with_their_outcome(
    pg_journey_app: JourneyApp,
) -> None:
    app = pg_journey_app
    journey_id = await app.create(promo(exit=[{"event": "Unsubscribed"}]))
    for customer in ("x1", "x2", "anon", "known"):
        await app.identify(customer, email=f"{customer}@example.com")
        await app.track(customer, "Promo Requested")
    await app.track("x1", "Unsubscribed")
    merged = Envelope.new(
        "customer.merged",
        app.workspace_id,
        "known",
        {"absorbed_id": "anon", "survivor_id": "known"},
        event_id="merged:anon",
    )
    await app.bus.publish(topics.CUSTOMER_LIFECYCLE, merged.bus_key, merged.to_bytes())
    await app.wait_until(lambda: _runs_of(app, "known", 2))
    app.clock.advance(minutes=5)
    response = await app.client.post(f"/v1/journeys/{journey_id}/archive", headers=app.admin)
    assert response.status_code == 200, response.text

    runs = {r["run_id"]: r for c in ("x1", "x2", "known") for r in await app.runs(c)}
    assert len(runs) == 4
    events = await app.journey_events(at_least=8, settle=1.0)
    assert len(events) == 8  # one entered and one completed per run, no more
    assert {e.payload["run_id"] for e in events if e.type == ENTERED} == set(runs)
    ended = {
        e.payload["run_id"]: (e.customer_key, e.payload["outcome"], e.payload["reason"])
        for e in events
        if e.type == COMPLETED
    }
    assert sorted(ended.values()) == [
        ("known", "cancelled", "archived"),
        ("known", "cancelled", "merged"),  # the absorbed id's run, now the survivor's
        ("x1", "exited", "exit:Unsubscribed"),
        ("x2", "cancelled", "archived"),
    ]
    for run_id, (_, outcome, reason) in ended.items():
        assert (runs[run_id]["status"], runs[run_id]["end_reason"]) == (outcome, reason)
    archived = [e for e in events if e.type == COMPLETED and e.payload["reason"] == "archived"]
    assert {e.payload["ended_at"] for e in archived} == {app.clock.now.isoformat()}
    assert {e.payload["steps_taken"] for e in archived} == {2}  # ab, then waiting at wait


async def _runs_of(app: JourneyApp, customer: str, count: int) -> bool:
    return len(await app.runs(customer)) == count


async def test_a_batch_appends_its_journey_events_in_one_statement_per_topic(
    pg_journey_app: JourneyApp,
) -> None:
    app = pg_journey_app
    customers = [f"b{i:03d}" for i in range(60)]
    await nudge_many(app, customers)  # wait an hour, then mail: the run ends as it mails
    journeys = app.journeys
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    def record_direct(query: Any) -> None:  # statements sent straight to asyncpg
        statements.append(query.query)

    # The app's own clock stays before the runs are due: only this transaction fires them.
    async with journeys.engine.begin() as conn:
        sa_event.listen(conn.sync_connection, "before_cursor_execute", record)
        driver = await driver_connection(conn)
        driver.add_query_logger(record_direct)
        batch = OutboxBatch()
        fired = await handlers.fire_due_runs(conn, app.clock.now + timedelta(hours=2), 1000, batch)
        await journeys.outbox.write(conn, batch)
        driver.remove_query_logger(record_direct)
    assert fired == len(customers)
    # straight into the PostgreSQL log (the outbox table is for Kafka)
    assert not [s for s in statements if "INSERT INTO jr_outbox" in s]
    writes = [s for s in statements if "INSERT INTO bus_messages" in s]
    assert len(writes) == 2  # send-requests and journey-events, however many runs ended
    assert len(statements) < len(customers)  # nothing per run
    events = await app.journey_events(at_least=2 * len(customers), settle=0.5)
    completed = [e for e in events if e.id.startswith("journey-completed:")]
    assert len(completed) == len({e.id for e in completed}) == len(customers)
