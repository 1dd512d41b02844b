"""Ingest throughput and latency against the Kafka producer ceiling, on real infrastructure.

Run with ``.venv/bin/python bench/bench_ingest.py`` (or ``make bench``). Starts a Kafka broker,
an embedded PostgreSQL and ``kizuna serve ingest`` (one uvicorn process), then measures in one
run, with the same envelopes:

(a) ceiling: a plain AIOKafkaProducer publishing the envelopes ingest would publish, from
    8 tasks in batches of 100 (acks=all, idempotent);
(b) ``POST /v1/batch`` with 100 events per request from concurrent keep-alive connections;
(c) ``POST /v1/track``, one event per request, from concurrent keep-alive connections.

The load client is a minimal HTTP/1.1 keep-alive client on asyncio streams, so that the client
costs little next to the server (both share the machine's cores). Prints a summary and, last,
one JSON line with events/s, the ratios b/a and c/a, and p50/p99 request latency.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from kizuna import auth, localkafka, migrate
from kizuna.bus.kafka import wait_for_leaders
from kizuna.db import create_engine
from kizuna.devserver import serve_process
from kizuna.embedded_pg import EmbeddedPostgres, ensure_database, free_port
from kizuna.envelope import Envelope

PARTITIONS = 8
BATCH_EVENTS = 100
BATCH_REQUESTS = 600
BATCH_CONNECTIONS = 8
TRACK_REQUESTS = 15_000
TRACK_CONNECTIONS = 16
CEILING_EVENTS = 60_000


def track_call(i: int) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": f"user-{i % 5000}",
        "event": "Product Viewed",
        "messageId": str(uuid.uuid4()),
        "timestamp": "2026-11-23T10:00:00.000Z",
        "properties": {"product_id": f"p-{i % 300}", "category": "kitchen", "price": 1200},
        "context": {
            "page": {"path": "/products/tea-set", "url": "https://shop.example/products/tea-set"},
            "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Safari/604.1",
            "library": {"name": "analytics.js", "version": "next-1.70.0"},
        },
    }


def request_bytes(path: str, body: bytes, auth_header: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Authorization: {auth_header}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def http_load(
    port: int, requests: list[bytes], connections: int
) -> tuple[float, list[float], int]:
    """Sends every request once over ``connections`` keep-alive connections.
    Returns (elapsed seconds, per-request latencies, count of non-200 answers)."""
    queue = list(reversed(requests))
    latencies: list[float] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                request = queue.pop()
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                if not head.startswith(b"HTTP/1.1 200"):
                    failures += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - started, latencies, failures


async def producer_ceiling(bootstrap: str, envelopes: list[Envelope]) -> float:
    topic = f"ceiling-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    await wait_for_leaders(admin, [topic])
    await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2
    )
    await producer.start()
    try:
        chunks = [envelopes[i : i + BATCH_EVENTS] for i in range(0, len(envelopes), BATCH_EVENTS)]

        async def publisher(mine: list[list[Envelope]]) -> None:
            for chunk in mine:
                futures = [
                    await producer.send(topic, e.to_bytes(), key=e.bus_key.encode()) for e in chunk
                ]
                await asyncio.gather(*futures)

        started = time.perf_counter()
        await asyncio.gather(*(publisher(chunks[i::8]) for i in range(8)))
        return len(envelopes) / (time.perf_counter() - started)
    finally:
        await producer.stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def setup_workspace(url: str) -> str:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            workspace_id = await auth.create_workspace(conn, "bench")
            key = await auth.issue_key(conn, workspace_id, "write", "bench")
    finally:
        await engine.dispose()
    return key.secret


def start_ingest(url: str, bootstrap: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        "KIZUNA_DATABASE_URL": url,
        "KIZUNA_BUS_URL": f"kafka://{bootstrap}",
        "KIZUNA_TOPIC_PREFIX": "bench.",
        "KIZUNA_BUS_PARTITIONS": str(PARTITIONS),
        "KIZUNA_INGEST_RATE_LIMIT": "1000000000",
        "KIZUNA_LOG_LEVEL": "WARNING",
        "KIZUNA_SECRET_KEY": secrets.token_hex(32),
    }
    return serve_process("ingest", port, env)


async def measure(port: int, bootstrap: str, write_key: str) -> dict[str, Any]:
    auth_header = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    calls = [track_call(i) for i in range(CEILING_EVENTS)]
    received = Envelope.new("track", "ws", "u", {}).received_at
    envelopes = [
        Envelope(
            id=c["messageId"],
            type="track",
            workspace_id="ws_bench",
            customer_key=c["userId"],
            occurred_at=received,
            received_at=received,
            payload=c,
        )
        for c in calls
    ]
    ceiling = statistics.median([await producer_ceiling(bootstrap, envelopes) for _ in range(2)])

    warm = [
        request_bytes("/v1/track", json.dumps(track_call(i)).encode(), auth_header)
        for i in range(500)
    ]
    await http_load(port, warm, 8)

    batches = [
        request_bytes(
            "/v1/batch",
            json.dumps(
                {"batch": [track_call(i * BATCH_EVENTS + j) for j in range(BATCH_EVENTS)]}
            ).encode(),
            auth_header,
        )
        for i in range(BATCH_REQUESTS)
    ]
    batch_elapsed, batch_latencies, batch_failures = await http_load(
        port, batches, BATCH_CONNECTIONS
    )
    batch_rate = BATCH_REQUESTS * BATCH_EVENTS / batch_elapsed

    singles = [
        request_bytes("/v1/track", json.dumps(track_call(i)).encode(), auth_header)
        for i in range(TRACK_REQUESTS)
    ]
    track_elapsed, track_latencies, track_failures = await http_load(
        port, singles, TRACK_CONNECTIONS
    )
    track_rate = TRACK_REQUESTS / track_elapsed

    return {
        "producer_ceiling_events_s": round(ceiling),
        "batch_events_s": round(batch_rate),
        "track_requests_s": round(track_rate),
        "batch_vs_ceiling": round(batch_rate / ceiling, 3),
        "track_vs_ceiling": round(track_rate / ceiling, 3),
        "batch_p50_ms": round(percentile(batch_latencies, 0.50) * 1000, 2),
        "batch_p99_ms": round(percentile(batch_latencies, 0.99) * 1000, 2),
        "track_p50_ms": round(percentile(track_latencies, 0.50) * 1000, 2),
        "track_p99_ms": round(percentile(track_latencies, 0.99) * 1000, 2),
        "batch_failures": batch_failures,
        "track_failures": track_failures,
        "batch_requests": BATCH_REQUESTS,
        "batch_events_per_request": BATCH_EVENTS,
        "batch_connections": BATCH_CONNECTIONS,
        "track_requests": TRACK_REQUESTS,
        "track_connections": TRACK_CONNECTIONS,
        "cpu_count": os.cpu_count(),
    }


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="kizuna-bench-ingest-"))
    broker = localkafka.start(workdir / "kafka")
    server = EmbeddedPostgres(workdir / "pg", free_port()).start()
    ingest: subprocess.Popen[bytes] | None = None
    try:
        asyncio.run(ensure_database(server.url, "bench"))
        url = server.database_url("bench")
        migrate.upgrade(url)
        write_key = asyncio.run(setup_workspace(url))
        port = free_port()
        ingest = start_ingest(url, broker.bootstrap, port)
        figures = asyncio.run(measure(port, broker.bootstrap, write_key))
    finally:
        if ingest is not None:
            ingest.send_signal(signal.SIGTERM)
            ingest.wait(30)
        server.stop()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"producer ceiling  {figures['producer_ceiling_events_s']:>8} events/s\n"
        f"/v1/batch (x100)  {figures['batch_events_s']:>8} events/s  "
        f"= {figures['batch_vs_ceiling']:.2f} of ceiling  "
        f"p50 {figures['batch_p50_ms']} ms  p99 {figures['batch_p99_ms']} ms\n"
        f"/v1/track         {figures['track_requests_s']:>8} requests/s "
        f"= {figures['track_vs_ceiling']:.2f} of ceiling  "
        f"p50 {figures['track_p50_ms']} ms  p99 {figures['track_p99_ms']} ms"
    )
    print(json.dumps(figures))
    return 0 if figures["batch_failures"] == figures["track_failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
