"""Journey timers at scale on real PostgreSQL: a burst of due runs, then paced timers' lateness.

Run with ``.venv/bin/python bench/bench_journey.py [--runs N]`` (default 1,000,000 waiting
runs; ``--runs 100000`` for a quick run). Starts an embedded PostgreSQL, creates a workspace
and one active journey ``w`` (wait PT1H) → ``s`` (send email) → ``w2`` (wait P1D), and fills
``jr_runs`` in SQL with N runs waiting at ``w`` (every customer has an email address), of which

- a tenth (100,000 of 1,000,000) are due within the same minute, just past: the burst;
- 20,000 (a fiftieth, at most 20,000) are kept for the paced phase;
- the rest are due over the next year: pending, present in the timer index, never fired.

Then it measures, with ``Journeys.fire_due`` (batches of ``--batch``, real clock):

(a) burst: one ``fire_due()`` call until nothing is due; every fired run logs two steps (the
    send and the next wait), one send request appended to the PostgreSQL log (with its
    ``journey.*`` events) and one run update. Reported: seconds, runs/s,
    steps/s (rows ``jr_steps`` gained ÷ seconds), and where the time went (SQL statements, timed
    around each execution, versus everything else: Python);
(b) paced: the kept runs made due one after another over the next seconds at ``--pace`` times
    the burst's rate (below capacity; or at ``--paced-steps-per-s``), fired by the service's
    own timer loop (``fire_due``, then 0.2 s of sleep whenever nothing fired). Lateness per
    run: the step log's ``at`` (the clock when its batch was claimed) minus its due time, and
    the end of the ``fire_due`` call that committed it minus its due time; p50 / p99 / max;
(c) baselines in the same run: ``SELECT count(*)`` over ``jr_runs``, and a plain ``UPDATE
    jr_runs SET due_at = NULL`` over as many rows as the burst fired, found through the same
    due-time index (rolled back); the burst is reported as a multiple of the UPDATE.

``--profile`` runs the burst under cProfile and prints the top functions (slower; the timings
are then not comparable). Prints a summary and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna import auth, migrate, topics
from kizuna.bus.factory import bus_from_settings
from kizuna.db import create_engine
from kizuna.embedded_pg import EmbeddedPostgres, ensure_database, free_port
from kizuna.envelope import utcnow
from kizuna.settings import KizunaSettings
from kizuna_journey.domain import definition
from kizuna_journey.runtime import Journeys

WS = "ws_bench"
JOURNEY = "birthday"
DEFINITION: dict[str, Any] = {
    "name": "Birthday",
    "trigger": {"type": "date", "trait": "birthday"},
    "start": "w",
    "steps": {
        "w": {"type": "wait", "duration": "PT1H", "next": "s"},
        "s": {"type": "send", "channel": "email", "template": "birthday", "next": "w2"},
        "w2": {"type": "wait", "duration": "P1D"},
    },
}
STEPS_PER_RUN = 2  # the send and the next wait
POLL_SECONDS = 0.2


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class SqlTimer:
    """Time spent inside statement executions (the round trip to PostgreSQL and the driver),
    by statement; the rest of a phase's time is Python."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.enabled = False
        self._started: list[float] = []
        sync = engine.sync_engine
        event.listen(sync, "before_cursor_execute", self._before)
        event.listen(sync, "after_cursor_execute", self._after)

    @staticmethod
    def label(statement: str) -> str:
        for needle, name in (
            ("FROM jr_runs r JOIN", "claim due runs (FOR UPDATE SKIP LOCKED)"),
            ("FROM jr_schedules s JOIN", "claim due schedules"),
            ("INSERT INTO jr_runs", "save runs (INSERT … ON CONFLICT UPDATE)"),
            ("INSERT INTO jr_steps", "insert steps"),
            ("FROM jr_customers", "load mirrors"),
            ("FROM jr_segments", "load segments"),
            ("FROM jr_journeys j", "active journeys"),
            ("FROM jr_journeys WHERE", "journey statuses"),
            ("FROM jr_settings", "delivery rules"),
        ):
            if needle in statement:
                return name
        return " ".join(statement.split())[:60]

    def _before(self, *_: Any) -> None:
        self._started.append(time.perf_counter())

    def _after(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        elapsed = time.perf_counter() - self._started.pop()
        if self.enabled:
            name = self.label(statement)
            self.seconds[name] += elapsed
            self.calls[name] += 1


async def setup(engine: AsyncEngine) -> None:
    parsed = definition.JourneyDefinition.model_validate(DEFINITION)
    problems = definition.validate(parsed)
    assert not problems, problems
    async with engine.begin() as conn:
        await auth.create_workspace(conn, "bench", WS)
        await conn.execute(
            sa.text(
                "INSERT INTO jr_journeys (workspace_id, id, name, status, version)"
                " VALUES (:ws, :j, 'Birthday', 'active', 1)"
            ),
            {"ws": WS, "j": JOURNEY},
        )
        await conn.execute(
            sa.text(
                "INSERT INTO jr_versions (workspace_id, journey_id, version, definition)"
                " VALUES (:ws, :j, 1, CAST(:d AS jsonb))"
            ),
            {"ws": WS, "j": JOURNEY, "d": json.dumps(DEFINITION)},
        )


async def fill(engine: AsyncEngine, runs: int, burst: int, paced: int, now: datetime) -> None:
    """Runs 1..burst are due in the minute before ``now``; burst+1..burst+paced are parked a
    month ahead (the paced phase sets their due time); the rest are due over the next year."""
    minute = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO jr_customers (workspace_id, customer_id, traits)"
                " SELECT :ws, 'c' || g, jsonb_build_object('email', 'c' || g || '@example.com')"
                " FROM generate_series(1, :n) g"
            ),
            {"ws": WS, "n": runs},
        )
        await conn.execute(
            sa.text(
                "INSERT INTO jr_runs (run_id, workspace_id, journey_id, version, customer_id,"
                " step, visits, data, due_at, entered_at)"
                " SELECT 'run_' || g, :ws, :j, 1, 'c' || g, 'w', '{\"w\": 1}', '{}',"
                " CASE WHEN g <= :burst"
                "  THEN CAST(:minute AS timestamptz) + make_interval(secs => (g % 60000) / 1000.0)"
                "  WHEN g <= :burst + :paced THEN CAST(:now AS timestamptz) + interval '30 days'"
                "  ELSE CAST(:now AS timestamptz) + interval '2 days'"
                "   + make_interval(secs => (CAST(g AS bigint) * 7919) % 31536000) END,"
                " CAST(:now AS timestamptz) - interval '1 hour'"
                " FROM generate_series(1, :n) g"
            ),
            {
                "ws": WS,
                "j": JOURNEY,
                "n": runs,
                "burst": burst,
                "paced": paced,
                "minute": minute,
                "now": now,
            },
        )
        await conn.execute(
            sa.text("CREATE TABLE bench_paced (run_id text PRIMARY KEY, due_at timestamptz)")
        )
    async with engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("jr_runs", "jr_customers", "jr_journeys", "jr_versions"):
            await auto.execute(sa.text(f"VACUUM ANALYZE {table}"))
        await auto.execute(sa.text("CHECKPOINT"))


async def scalar(engine: AsyncEngine, query: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return await conn.scalar(sa.text(query), params)


async def timed_count(engine: AsyncEngine) -> float:
    async with engine.connect() as conn:
        started = time.perf_counter()
        await conn.execute(sa.text("SELECT count(*) FROM jr_runs"))
        return time.perf_counter() - started


async def timed_update(engine: AsyncEngine, low: datetime, high: datetime) -> tuple[float, int]:
    """A plain UPDATE of the runs due in [low, high] (the burst, a day on), rolled back."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        started = time.perf_counter()
        result = await conn.execute(
            sa.text("UPDATE jr_runs SET due_at = NULL WHERE due_at >= :low AND due_at <= :high"),
            {"low": low, "high": high},
        )
        elapsed = time.perf_counter() - started
        await transaction.rollback()
    return elapsed, result.rowcount


async def burst_phase(
    engine: AsyncEngine, journeys: Journeys, sql: SqlTimer, profile: bool
) -> dict[str, Any]:
    steps_before = await scalar(engine, "SELECT count(*) FROM jr_steps")
    profiler = cProfile.Profile() if profile else None
    sql.enabled = True
    if profiler is not None:
        profiler.enable()
    started = time.perf_counter()
    first_at = utcnow()
    fired = await journeys.fire_due()
    seconds = time.perf_counter() - started
    last_at = utcnow()
    if profiler is not None:
        profiler.disable()
    sql.enabled = False
    steps = await scalar(engine, "SELECT count(*) FROM jr_steps") - steps_before
    in_sql = sum(sql.seconds.values())
    figures: dict[str, Any] = {
        "burst_fired": fired,
        "burst_steps": steps,
        "burst_seconds": round(seconds, 2),
        "burst_runs_per_s": round(fired / seconds),
        "burst_steps_per_s": round(steps / seconds),
        "burst_sql_seconds": round(in_sql, 2),
        "burst_python_seconds": round(seconds - in_sql, 2),
        "burst_sql_by_statement": {
            name: {"seconds": round(s, 2), "calls": sql.calls[name]}
            for name, s in sorted(sql.seconds.items(), key=lambda item: -item[1])
        },
        "_window": (first_at, last_at),
    }
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
        figures["_profile"] = out.getvalue()
    return figures


async def paced_phase(
    engine: AsyncEngine, journeys: Journeys, first: int, paced: int, rate: float
) -> dict[str, Any]:
    """Makes runs first..first+paced-1 due one after another at ``rate`` per second, from a
    second from now, and runs the timer loop until all have fired."""
    start = utcnow() + timedelta(seconds=1)
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO bench_paced (run_id, due_at) SELECT 'run_' || g,"
                " CAST(:start AS timestamptz) + make_interval(secs => (g - CAST(:first AS int))"
                " / CAST(:rate AS float8)) FROM generate_series(CAST(:first AS int),"
                " CAST(:last AS int)) g"
            ),
            {"start": start, "first": first, "last": first + paced - 1, "rate": rate},
        )
        await conn.execute(
            sa.text(
                "UPDATE jr_runs r SET due_at = p.due_at FROM bench_paced p"
                " WHERE r.run_id = p.run_id"
            )
        )
    setup_late = (utcnow() - start).total_seconds()
    calls: list[tuple[datetime, datetime]] = []
    fired_total = 0
    deadline = start + timedelta(seconds=paced / rate + 120)
    while fired_total < paced and utcnow() < deadline:
        called = utcnow()
        fired = await journeys.fire_due()
        if fired:
            calls.append((called, utcnow()))
            fired_total += fired
        else:
            await asyncio.sleep(POLL_SECONDS)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.text(
                    "SELECT p.due_at, s.at FROM bench_paced p JOIN jr_steps s"
                    " ON s.run_id = p.run_id AND s.step_id = 's'"
                )
            )
        ).all()
    starts = [c[0] for c in calls]
    at_claim: list[float] = []
    at_commit: list[float] = []
    for due_at, at in rows:
        at_claim.append((at - due_at).total_seconds())
        call = calls[max(0, bisect.bisect_right(starts, at) - 1)]
        at_commit.append((call[1] - due_at).total_seconds())
    return {
        "paced_runs": paced,
        "paced_fired": fired_total,
        "paced_logged": len(rows),
        "paced_rate_runs_per_s": round(rate),
        "paced_steps_per_s": round(rate * STEPS_PER_RUN),
        "paced_fire_due_calls": len(calls),
        "paced_setup_overrun_s": round(setup_late, 3),
        "lateness_claim_p50_s": round(percentile(at_claim, 0.50), 3) if at_claim else None,
        "lateness_claim_p99_s": round(percentile(at_claim, 0.99), 3) if at_claim else None,
        "lateness_claim_max_s": round(max(at_claim), 3) if at_claim else None,
        "lateness_commit_p50_s": round(percentile(at_commit, 0.50), 3) if at_commit else None,
        "lateness_commit_p99_s": round(percentile(at_commit, 0.99), 3) if at_commit else None,
        "lateness_commit_max_s": round(max(at_commit), 3) if at_commit else None,
        "lateness_early_runs": sum(1 for v in at_claim if v < 0),
    }


async def checks(engine: AsyncEngine, burst: int, paced: int) -> list[str]:
    """Every fired run moved on exactly once: at w2, one send logged, one send request."""
    errors = []
    fired = burst + paced
    at_w2 = await scalar(engine, "SELECT count(*) FROM jr_runs WHERE step = 'w2'")
    sent = await scalar(engine, "SELECT count(*) FROM jr_steps WHERE outcome = 'sent'")
    steps = await scalar(engine, "SELECT count(*) FROM jr_steps")
    requests = await scalar(
        engine, "SELECT count(*) FROM bus_messages WHERE topic LIKE '%send-requests'"
    )
    still_due = await scalar(
        engine, "SELECT count(*) FROM jr_runs WHERE due_at <= :now", now=utcnow()
    )
    for name, got, want in (
        ("runs at w2", at_w2, fired),
        ("sends logged", sent, fired),
        ("steps logged", steps, fired * STEPS_PER_RUN),
        ("send requests", requests, fired),
        ("runs still due", still_due, 0),
    ):
        if got != want:
            errors.append(f"{name}: {got}, expected {want}")
    return errors


async def measure(
    url: str, runs: int, batch: int, pace: float, paced_steps: float | None, profile: bool
) -> dict[str, Any]:
    burst = max(1, runs // 10)
    paced = max(1, min(20_000, runs // 50))
    engine = create_engine(url, pool_size=2)
    # The PostgreSQL log: each batch's send requests are appended to it as it commits.
    bus = bus_from_settings(KizunaSettings(database_url=url, bus_url="postgres"))
    await bus.start()
    try:
        await bus.ensure_topics(topics.ALL_TOPICS)
        await setup(engine)
        started = time.perf_counter()
        await fill(engine, runs, burst, paced, utcnow())
        fill_seconds = time.perf_counter() - started
        count = statistics.median([await timed_count(engine) for _ in range(3)])

        sql = SqlTimer(engine)
        journeys = Journeys(engine, bus, timer_batch=batch, poll_seconds=POLL_SECONDS)
        figures = await burst_phase(engine, journeys, sql, profile)
        first_at, last_at = figures.pop("_window")
        rate = paced_steps / STEPS_PER_RUN if paced_steps else pace * figures["burst_runs_per_s"]
        figures.update(await paced_phase(engine, journeys, burst + 1, paced, rate))

        # the burst's runs now wait at w2, due a day after they fired
        low, high = first_at + timedelta(days=1), last_at + timedelta(days=1)
        updates = [await timed_update(engine, low, high) for _ in range(3)]
        update = statistics.median(u[0] for u in updates)
        errors = await checks(engine, burst, paced)
        if figures["burst_fired"] != burst:
            errors.append(f"burst fired {figures['burst_fired']}, expected {burst}")
        if updates[0][1] != burst:
            errors.append(f"baseline UPDATE touched {updates[0][1]} rows, expected {burst}")
    finally:
        await bus.close()
        await engine.dispose()
    return {
        "runs": runs,
        "burst_runs": burst,
        "pending_runs": runs - burst - paced,
        "timer_batch": batch,
        "fill_seconds": round(fill_seconds, 1),
        "count_runs_seconds": round(count, 3),
        "update_burst_rows_seconds": round(update, 2),
        **figures,
        "burst_vs_update": round(figures["burst_seconds"] / update, 1),
        "burst_vs_count": round(figures["burst_seconds"] / count, 1),
        "targets": {
            "steps_per_s_ge_5000": figures["burst_steps_per_s"] >= 5000,
            "burst_100k_within_60s": figures["burst_seconds"] * 100_000 / burst <= 60,
            "p99_lateness_lt_1s": (figures["lateness_commit_p99_s"] or 1e9) < 1,
        },
        "cpu_count": os.cpu_count(),
        "errors": errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Journey timers at scale on real PostgreSQL.")
    parser.add_argument("--runs", type=int, default=1_000_000, help="waiting runs in jr_runs")
    parser.add_argument("--batch", type=int, default=1000, help="Journeys.timer_batch")
    parser.add_argument("--pace", type=float, default=0.5, help="paced rate ÷ burst rate")
    parser.add_argument(
        "--paced-steps-per-s", type=float, help="pace the paced phase at this rate instead"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the burst")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kizuna-bench-journey-"))
    server = EmbeddedPostgres(
        workdir / "pg",
        free_port(),
        settings={"shared_buffers": "512MB", "work_mem": "64MB", "max_wal_size": "4GB"},
    ).start()
    try:
        asyncio.run(ensure_database(server.url, "bench"))
        url = server.database_url("bench")
        migrate.upgrade(url)
        figures = asyncio.run(
            measure(url, args.runs, args.batch, args.pace, args.paced_steps_per_s, args.profile)
        )
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    profile = figures.pop("_profile", None)
    if profile:
        print(profile)
    print(
        f"{figures['runs']:,} waiting runs ({figures['burst_runs']:,} due in one minute,"
        f" {figures['pending_runs']:,} pending); fill {figures['fill_seconds']} s\n"
        f"baseline: count(*) {figures['count_runs_seconds']} s,"
        f" UPDATE of {figures['burst_runs']:,} due rows {figures['update_burst_rows_seconds']} s\n"
        f"burst     {figures['burst_seconds']:>7} s = {figures['burst_vs_update']}x the UPDATE;"
        f" {figures['burst_runs_per_s']:,} runs/s, {figures['burst_steps_per_s']:,} steps/s\n"
        f"          SQL {figures['burst_sql_seconds']} s,"
        f" Python {figures['burst_python_seconds']} s"
    )
    for name, item in figures["burst_sql_by_statement"].items():
        print(f"            {item['seconds']:>7} s  {item['calls']:>6} calls  {name}")
    print(
        f"paced     {figures['paced_runs']:,} runs at {figures['paced_rate_runs_per_s']:,} runs/s"
        f" ({figures['paced_steps_per_s']:,} steps/s): lateness at claim p50"
        f" {figures['lateness_claim_p50_s']} s, p99 {figures['lateness_claim_p99_s']} s;"
        f" at commit p50 {figures['lateness_commit_p50_s']} s,"
        f" p99 {figures['lateness_commit_p99_s']} s, max {figures['lateness_commit_max_s']} s"
    )
    print(f"targets   {figures['targets']}")
    if figures["errors"]:
        print("ERRORS   ", "; ".join(figures["errors"]))
    print(json.dumps(figures))
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
