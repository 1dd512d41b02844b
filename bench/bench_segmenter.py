"""RFM at scale on real PostgreSQL: boundary recompute, a full rescoring pass, one purchase.

Run with ``.venv/bin/python bench/bench_segmenter.py [--customers N] [--orders M]`` (defaults
1,000,000 and 5,000,000; ``--quick`` for 100,000 and 500,000). Starts an embedded PostgreSQL,
fills the segmenter's order ledger and customer facts in SQL, scores everyone once, then
measures, each against a plain ``SELECT count(*)`` over the orders table in the same run:

(a) recomputing the quintile boundaries (``percentile_cont``);
(b) a full rescoring pass after the boundaries moved (a day later), writing only what changed;
(c) one purchase: the segmenter's work for an ``Order Completed`` of an existing customer
    (ledger, facts, score, tier, outbox), per event, averaged over 200 purchases.

Prints a summary and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from kizuna import migrate
from kizuna.db import create_engine
from kizuna.embedded_pg import EmbeddedPostgres, ensure_database, free_port
from kizuna.envelope import Envelope
from kizuna_segmenter import handlers
from kizuna_segmenter.adapters import store
from kizuna_segmenter.runtime import Segmenter

WS = "ws_bench"
NOW = datetime(2026, 11, 24, tzinfo=UTC)


async def fill(engine: Any, customers: int, orders: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO seg_orders (workspace_id, order_id, customer_id, ordered_at, amount,"
                " event_id) SELECT :ws, 'o' || g, 'c' || (g % :customers),"
                " CAST(:now AS timestamptz) - make_interval(secs => (random() * 86400 * 700)::int),"
                " (500 + random() * 20000)::int, 'e' || g FROM generate_series(1, :orders) g"
            ),
            {"ws": WS, "customers": customers, "orders": orders, "now": NOW},
        )
        await conn.execute(
            sa.text(
                "INSERT INTO seg_customers (workspace_id, customer_id, first_order_at,"
                " last_order_at, frequency, monetary, lifetime_orders, lifetime_revenue)"
                " SELECT :ws, customer_id, min(ordered_at), max(ordered_at),"
                " count(*) FILTER (WHERE ordered_at > :since),"
                " coalesce(sum(amount) FILTER (WHERE ordered_at > :since), 0),"
                " count(*), sum(amount) FROM seg_orders GROUP BY customer_id"
            ),
            {"ws": WS, "since": NOW - timedelta(days=365)},
        )
        await conn.execute(sa.text("ANALYZE seg_orders"))
        await conn.execute(sa.text("ANALYZE seg_customers"))


async def timed_count(engine: Any) -> float:
    async with engine.connect() as conn:
        started = time.perf_counter()
        await conn.execute(sa.text("SELECT count(*) FROM seg_orders"))
        return time.perf_counter() - started


async def timed_bounds(engine: Any, now: datetime) -> float:
    async with engine.begin() as conn:
        started = time.perf_counter()
        await store.recompute_bounds(conn, WS, now)
        return time.perf_counter() - started


def purchase(i: int, now: datetime) -> Envelope:
    return Envelope(
        id=f"bench-{i}",
        type="track",
        workspace_id=WS,
        customer_key=f"c{i * 37 % 1000}",
        occurred_at=now,
        received_at=now,
        payload={"type": "track", "event": "Order Completed",
                 "properties": {"order_id": f"bench-o{i}", "total": 4200}},
    )  # fmt: skip


async def measure(url: str, customers: int, orders: int) -> dict[str, Any]:
    engine = create_engine(url, pool_size=4)
    try:
        started = time.perf_counter()
        await fill(engine, customers, orders)
        fill_seconds = time.perf_counter() - started
        segmenter = Segmenter(engine, bus=None, clock=lambda: NOW)  # type: ignore[arg-type]
        started = time.perf_counter()
        first = await segmenter.refresh_bounds(WS, force=True)
        first_pass = time.perf_counter() - started

        count = statistics.median([await timed_count(engine) for _ in range(3)])
        bounds = statistics.median([await timed_bounds(engine, NOW) for _ in range(3)])

        later = NOW + timedelta(days=1)
        segmenter.clock = lambda: later
        started = time.perf_counter()
        changed = await segmenter.refresh_bounds(WS, force=True)
        full_pass = time.perf_counter() - started

        per_purchase = []
        for i in range(200):
            async with engine.begin() as conn:
                started = time.perf_counter()
                await handlers.on_events(conn, [purchase(i, later)], later)
                per_purchase.append(time.perf_counter() - started)
        purchase_ms = statistics.median(per_purchase) * 1000
    finally:
        await engine.dispose()
    return {
        "customers": customers,
        "orders": orders,
        "fill_seconds": round(fill_seconds, 1),
        "first_scoring_seconds": round(first_pass, 2),
        "first_scoring_tier_changes": first,
        "count_orders_seconds": round(count, 3),
        "bounds_seconds": round(bounds, 3),
        "bounds_vs_count": round(bounds / count, 2),
        "full_pass_seconds": round(full_pass, 2),
        "full_pass_vs_count": round(full_pass / count, 2),
        "full_pass_tier_changes": changed,
        "purchase_ms": round(purchase_ms, 2),
        "purchase_vs_count": round(purchase_ms / 1000 / count, 4),
        "cpu_count": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="RFM at scale on real PostgreSQL.")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=5_000_000)
    parser.add_argument("--quick", action="store_true", help="100k customers, 500k orders")
    args = parser.parse_args()
    if args.quick:
        args.customers, args.orders = 100_000, 500_000
    workdir = Path(tempfile.mkdtemp(prefix="kizuna-bench-segmenter-"))
    server = EmbeddedPostgres(
        workdir / "pg", free_port(), settings={"shared_buffers": "512MB", "work_mem": "64MB"}
    ).start()
    try:
        asyncio.run(ensure_database(server.url, "bench"))
        url = server.database_url("bench")
        migrate.upgrade(url)
        figures = asyncio.run(measure(url, args.customers, args.orders))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"{figures['customers']} customers, {figures['orders']} orders"
        f" (count(*) over orders: {figures['count_orders_seconds']} s)\n"
        f"boundaries        {figures['bounds_seconds']:>8} s"
        f" = {figures['bounds_vs_count']}x count\n"
        f"full pass         {figures['full_pass_seconds']:>8} s = {figures['full_pass_vs_count']}x"
        f" count ({figures['full_pass_tier_changes']} tier changes)\n"
        f"one purchase      {figures['purchase_ms']:>8} ms"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
