"""The profile consumer's handler in process, on a real PostgreSQL: where an event's CPU goes.

Run with ``.venv/bin/python bench/bench_profile_handler.py [--warm N] [--events M]``. Starts an
embedded PostgreSQL with ``pg_stat_statements``, then, with the service's garbage-collector
settings:

(a) warm-up: N events (100,000 by default) of ``bench_profile``'s mix for 100,000 customers
    go through ``handlers.process`` in batches of ``--batch`` (the service's consumer batch
    size by default), then ``ANALYZE``, as on a live database;
(b) measured: M more events the same way, each batch decoded from bytes first and its resolved
    and lifecycle events encoded after, as the consumer does (no broker);
(c) baseline: the same M events only decoded and their resolved copies encoded.

Prints CPU per event of this process and of PostgreSQL (from /proc: Linux), events/s, the
costliest statements and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.* when run as a script

from bench.bench_profile import make_event
from kizuna import migrate
from kizuna.db import asyncpg_dsn, create_engine
from kizuna.embedded_pg import EmbeddedPostgres, ensure_database, free_port
from kizuna.envelope import Envelope
from kizuna.service import GC_THRESHOLDS
from kizuna_profile import handlers
from kizuna_profile.settings import ProfileSettings

DEFAULT_BATCH: int = ProfileSettings.model_fields["consumer_batch_size"].default


def postgres_cpu(postmaster: int) -> float:
    """CPU seconds of the postmaster's children so far (backends, writers, autovacuum)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster or int(stat.parent.name) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


async def through_handler(engine: Any, raw: list[bytes], batch: int) -> None:
    for start in range(0, len(raw), batch):
        events = [Envelope.from_bytes(value) for value in raw[start : start + batch]]
        async with engine.begin() as conn:
            outcome = await handlers.process(conn, events)
        for event in (*outcome.lifecycle, *outcome.resolved):
            event.to_bytes()


def decode_and_encode(raw: list[bytes]) -> None:
    for value in raw:
        handlers.resolved_form(Envelope.from_bytes(value), "c_0").to_bytes()


async def statements(url: str, events: int) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT total_exec_time, calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 90)"
            " FROM pg_stat_statements ORDER BY 1 DESC LIMIT 10"
        )
    finally:
        await conn.close()
    return [
        {"us_per_event": round(row[0] / events * 1000, 1), "calls": row[1], "query": row[2]}
        for row in rows
    ]


async def wal(url: str, events: int) -> dict[str, float]:
    """WAL written per event since the last reset: records, full-page images, bytes."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        row = await conn.fetchrow("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal")
    finally:
        await conn.close()
    names = ("wal_records", "wal_fpi", "wal_bytes")
    return {name: 0.0 if row is None else round(float(row[name]) / events, 2) for name in names}


async def sql(url: str, *commands: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        for command in commands:
            await conn.execute(command)
    finally:
        await conn.close()


async def measure(url: str, postmaster: int, warm: int, events: int, batch: int) -> dict[str, Any]:
    rng = random.Random(1)
    raw = [make_event(i, rng, "ws_bench").to_bytes() for i in range(warm + events)]
    engine = create_engine(url, pool_size=1)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        await through_handler(engine, raw[:warm], batch)
        await sql(
            url,
            "ANALYZE",
            "SELECT pg_stat_statements_reset()",
            "SELECT pg_stat_reset_shared('wal')",
        )
        measured = raw[warm:]
        cpu, pg, wall = time.process_time(), postgres_cpu(postmaster), time.perf_counter()
        await through_handler(engine, measured, batch)
        wall = time.perf_counter() - wall
        cpu, pg = time.process_time() - cpu, postgres_cpu(postmaster) - pg
        base = time.process_time()
        decode_and_encode(measured)
        base = time.process_time() - base
    finally:
        await engine.dispose()
    return {
        "warm_events": warm,
        "batch": batch,
        "events": events,
        "events_s": round(events / wall),
        "python_us_per_event": round(cpu / events * 1e6, 1),
        "postgres_us_per_event": round(pg / events * 1e6, 1),
        "baseline_decode_encode_us_per_event": round(base / events * 1e6, 1),
        "python_vs_baseline": round(cpu / base, 1),
        "statements": await statements(url, events),
        "wal": await wal(url, events),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--warm", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="events per batch")
    parser.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a PostgreSQL setting for the embedded server (repeatable)",
    )
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.pg_setting)
    workdir = Path(tempfile.mkdtemp(prefix="kizuna-bench-profile-handler-"))
    server = EmbeddedPostgres(
        workdir / "pg",
        free_port(),
        {**settings, "shared_preload_libraries": "pg_stat_statements"},
    ).start()
    try:
        asyncio.run(ensure_database(server.url, "bench"))
        url = server.database_url("bench")
        migrate.upgrade(url)
        asyncio.run(sql(url, "CREATE EXTENSION pg_stat_statements"))
        postmaster = int((workdir / "pg" / "postmaster.pid").read_text().split()[0])
        figures = asyncio.run(measure(url, postmaster, args.warm, args.events, args.batch))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    for statement in figures["statements"]:
        print(f"{statement['us_per_event']:6.1f} µs/event  {statement['query']}")
    print(
        f"{figures['events_s']} events/s; CPU per event: this process"
        f" {figures['python_us_per_event']} µs ({figures['python_vs_baseline']}x decoding and"
        f" encoding alone, {figures['baseline_decode_encode_us_per_event']} µs), PostgreSQL"
        f" {figures['postgres_us_per_event']} µs"
    )
    wal_written = figures["wal"]
    print(
        f"WAL per event: {wal_written['wal_records']} records,"
        f" {wal_written['wal_fpi']} full-page images, {wal_written['wal_bytes']:.0f} bytes"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
