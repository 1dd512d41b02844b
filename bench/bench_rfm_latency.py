"""How long from ingest accepting a purchase to the buyer's new RFM tier, through the whole
pipeline: ingest → raw-events → profile → resolved-events → segmenter.

Run with ``.venv/bin/python bench/bench_rfm_latency.py [--orders N]``. Starts an embedded
PostgreSQL and runs ingest, profile and segmenter in this process on the PostgreSQL event log
(the embedded default), posts N purchases one at a time to ``POST /v1/track`` and, for each,
times from ingest's 200 until the segmenter has scored the buyer. As the baseline measured in
the same run: the round trip of one event through the bus alone (publish, then a consumer
receives it). Prints p50/p95/p99 and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from kizuna import auth, migrate
from kizuna.bus import OutgoingMessage
from kizuna.bus.factory import bus_from_settings
from kizuna.db import create_engine
from kizuna.embedded_pg import EmbeddedPostgres, ensure_database, free_port
from kizuna.settings import KizunaSettings
from kizuna_ingest.main import create_app as ingest_app
from kizuna_ingest.settings import IngestSettings
from kizuna_profile.main import create_app as profile_app
from kizuna_profile.settings import ProfileSettings
from kizuna_segmenter.main import create_app as segmenter_app
from kizuna_segmenter.settings import SegmenterSettings


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan (consumers included), reached in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            yield client


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bus_round_trip(settings: KizunaSettings, samples: int) -> list[float]:
    bus = bus_from_settings(settings)
    await bus.start()
    consumer = bus.consumer(f"rtt-{uuid.uuid4().hex[:6]}", ["latency-probe"])
    await bus.ensure_topics(["latency-probe"])
    await consumer.start()
    times = []
    try:
        for i in range(samples):
            started = time.perf_counter()
            await bus.publish_batch("latency-probe", [OutgoingMessage(f"k{i}", b"x")])
            while not (batch := await consumer.fetch(10, 1.0)):
                pass
            await consumer.commit(batch)
            times.append(time.perf_counter() - started)
    finally:
        await consumer.close()
        await bus.close()
    return times


async def measure(url: str, orders: int) -> dict[str, Any]:
    engine = create_engine(url, pool_size=2)
    async with engine.begin() as conn:
        workspace_id = await auth.create_workspace(conn, "bench")
        key = await auth.issue_key(conn, workspace_id, "write", "bench")
    base: dict[str, Any] = {"database_url": url, "log_level": "WARNING", "consumer_batch_size": 500}
    auth_header = {"Authorization": "Basic " + base64.b64encode(f"{key.secret}:".encode()).decode()}
    latencies: list[float] = []
    async with (
        running(ingest_app(IngestSettings(**base, ingest_source_cache_seconds=60))) as ingest,
        running(profile_app(ProfileSettings(**base))),
        running(segmenter_app(SegmenterSettings(**base, segmenter_sweep_seconds=3600))),
    ):
        for i in range(orders + 5):
            user = f"buyer-{i}"
            call = {"userId": user, "event": "Order Completed",
                    "properties": {"order_id": f"o-{i}", "total": 1000 + i}}  # fmt: skip
            response = await ingest.post("/v1/track", json=call, headers=auth_header)
            response.raise_for_status()
            accepted = time.perf_counter()
            while True:
                async with engine.connect() as conn:
                    tier = await conn.scalar(
                        sa.text(
                            "SELECT c.tier FROM seg_customers c JOIN seg_orders o"
                            " ON o.workspace_id = c.workspace_id AND o.customer_id = c.customer_id"
                            " WHERE o.workspace_id = :ws AND o.order_id = :order"
                        ),
                        {"ws": workspace_id, "order": f"o-{i}"},
                    )
                if tier is not None:
                    break
                await asyncio.sleep(0.002)
            if i >= 5:  # the first few warm the caches
                latencies.append(time.perf_counter() - accepted)
    baseline = await bus_round_trip(KizunaSettings(**base), 100)
    await engine.dispose()
    return {
        "orders": orders,
        "accepted_to_tier_p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "accepted_to_tier_p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
        "accepted_to_tier_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "accepted_to_tier_max_ms": round(max(latencies) * 1000, 1),
        "bus_round_trip_p50_ms": round(statistics.median(baseline) * 1000, 1),
        "hops_vs_bus_round_trip": round(
            statistics.median(latencies) / statistics.median(baseline), 2
        ),
        "cpu_count": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Purchase to RFM tier, end to end.")
    parser.add_argument("--orders", type=int, default=200)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kizuna-bench-latency-"))
    server = EmbeddedPostgres(workdir / "pg", free_port()).start()
    try:
        asyncio.run(ensure_database(server.url, "bench"))
        url = server.database_url("bench")
        migrate.upgrade(url)
        figures = asyncio.run(measure(url, args.orders))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"purchase accepted → tier: p50 {figures['accepted_to_tier_p50_ms']} ms,"
        f" p95 {figures['accepted_to_tier_p95_ms']} ms, p99 {figures['accepted_to_tier_p99_ms']} ms"
        f" (bus round trip p50 {figures['bus_round_trip_p50_ms']} ms)"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
