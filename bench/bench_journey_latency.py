"""How long from ingest accepting a ``Checkout Started`` to the send request on the bus, for a
journey whose first step is a send: ingest → raw-events → profile → resolved-events → journey
→ send-requests (appended by the journey's own transaction: the PostgreSQL log's outbox).

Run with ``.venv/bin/python bench/bench_journey_latency.py [--rate 1000] [--seconds 15]``.
Starts an embedded PostgreSQL and ``kizuna serve`` ingest, profile and journey (one process
each, as deployed, on the PostgreSQL event log: the embedded default; ``--bus kafka`` starts a
local Kafka broker on the same cores and runs them on it). Every customer is
identified (with an email address) before the clock starts, and ``--warmup`` seconds of the
same traffic for other customers come first, so that statistics are gathered on tables that
hold rows, as autovacuum's are on a live system. Then ``Checkout Started`` events
are posted to ``POST /v1/batch`` at ``--rate`` events/s (a post every ``--tick`` seconds,
10 ms by default), one customer each, and a reader on ``send-requests`` notes when each
one's send request arrives. Latency = arrival minus the 200 of the batch that carried the
event. As the baseline measured in the same run: the round trip of one message through the
bus alone. The load generator shares the cores with what it measures, so it is kept light: it
runs on uvloop, posts with a minimal HTTP/1.1 keep-alive client (``--client aiohttp`` for
aiohttp, which costs it about twice the CPU; httpx costs milliseconds a request) and reads the
probe back with orjson. It also reports how busy the whole machine was while the measured
posts were answered. Prints p50/p95/p99 and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import orjson
import uvloop

from kizuna import auth, localkafka, migrate, topics
from kizuna.bus import OutgoingMessage
from kizuna.bus.factory import bus_from_settings
from kizuna.db import asyncpg_dsn, create_engine
from kizuna.devserver import serve_process
from kizuna.embedded_pg import EmbeddedPostgres, ensure_database, free_port
from kizuna.settings import KizunaSettings

JOURNEY = {
    "id": "checkout",
    "name": "Checkout follow-up",
    "trigger": {"type": "event", "event": "Checkout Started"},
    "start": "mail",
    "steps": {"mail": {"type": "send", "channel": "email", "template": "checkout"}},
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bus_round_trip(settings: KizunaSettings, samples: int) -> list[float]:
    bus = bus_from_settings(settings)
    await bus.start()
    await bus.ensure_topics(["latency-probe"])
    consumer = bus.consumer(f"rtt-{uuid.uuid4().hex[:6]}", ["latency-probe"])
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


async def read_sends(
    settings: KizunaSettings, arrived: dict[int, float], stop: asyncio.Event
) -> None:
    bus = bus_from_settings(settings)
    await bus.start()
    consumer = bus.consumer(f"probe-{uuid.uuid4().hex[:6]}", [topics.SEND_REQUESTS])
    await consumer.start()
    try:
        while not stop.is_set():
            for message in await consumer.fetch(1000, 0.05):
                # orjson rather than Envelope: the reader shares the cores with the system
                probe = orjson.loads(message.value)["payload"]["data"]["properties"]["probe"]
                arrived.setdefault(int(probe), time.perf_counter())
    finally:
        await consumer.close()
        await bus.close()


class AiohttpPoster:
    """Posts batches with aiohttp: about 0.35 ms of the load generator's CPU a post here."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.session = aiohttp.ClientSession(
            base_url=f"http://127.0.0.1:{port}",
            connector=aiohttp.TCPConnector(limit=200),
            timeout=aiohttp.ClientTimeout(total=60),
        )
        self.headers = {**headers, "Content-Type": "application/json"}

    async def post(self, calls: list[dict[str, Any]]) -> float:
        async with self.session.post(
            "/v1/batch", data=orjson.dumps({"batch": calls}), headers=self.headers
        ) as response:
            response.raise_for_status()
            await response.read()
        return time.perf_counter()

    async def close(self) -> None:
        await self.session.close()


IDLE_SECONDS = 3  # uvicorn closes a keep-alive connection idle for 5 s


class KeepAlivePoster:
    """Posts batches as a minimal HTTP/1.1 client on asyncio streams, over keep-alive
    connections it reuses: the load generator shares the cores with what it measures, and a
    post costs it a fraction of aiohttp's CPU. Ingest sees the same requests either way."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.head = (
            f"POST /v1/batch HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "content-type: application/json\r\ncontent-length: "
        ).encode()
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.opened: list[asyncio.StreamWriter] = []

    async def post(self, calls: list[dict[str, Any]]) -> float:
        reader, writer = await self.connection()
        body = orjson.dumps({"batch": calls})
        writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = await reader.readuntil(b"\r\n\r\n")
        _, found, rest = head.lower().partition(b"\r\ncontent-length:")
        if not found:
            raise RuntimeError(f"an answer without content-length: {head[:200]!r}")
        answer = await reader.readexactly(int(rest.split(b"\r\n", 1)[0]))
        done = time.perf_counter()
        if head[9:12] != b"200":
            raise RuntimeError(f"ingest answered {head[9:12].decode()}: {answer[:300]!r}")
        self.idle.append((reader, writer, done))
        return done

    async def connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            reader, writer, last_used = self.idle.pop()
            if time.perf_counter() - last_used < IDLE_SECONDS:
                return reader, writer
            writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.opened.append(writer)
        return reader, writer

    async def close(self) -> None:
        for writer in self.opened:
            writer.close()


Poster = AiohttpPoster | KeepAlivePoster
POSTERS: dict[str, type[Poster]] = {"keep-alive": KeepAlivePoster, "aiohttp": AiohttpPoster}


async def measure(
    url: str,
    rate: int,
    seconds: float,
    tick_seconds: float,
    warmup_seconds: float = 5,
    journey_replicas: int = 1,
    client: str = "keep-alive",
    postmaster_pid: int | None = None,
    broker: localkafka.LocalKafka | None = None,
) -> dict[str, Any]:
    engine = create_engine(url, pool_size=2)
    async with engine.begin() as conn:
        workspace_id = await auth.create_workspace(conn, "bench")
        key = await auth.issue_key(conn, workspace_id, "write", "bench")
        admin = await auth.issue_key(conn, workspace_id, "admin", "bench")
    await engine.dispose()
    bus_url = f"kafka://{broker.bootstrap}" if broker is not None else "postgres"
    base: dict[str, Any] = {"database_url": url, "bus_url": bus_url, "log_level": "WARNING"}
    write = {"Authorization": "Basic " + base64.b64encode(f"{key.secret}:".encode()).decode()}
    admin_header = {"Authorization": f"Bearer {admin.secret}"}
    total = int(rate * seconds)
    accepted: dict[int, float] = {}
    arrived: dict[int, float] = {}
    per_tick = max(1, int(rate * tick_seconds))
    env = {
        "KIZUNA_DATABASE_URL": url,
        "KIZUNA_BUS_URL": bus_url,
        "KIZUNA_LOG_LEVEL": "WARNING",
        "KIZUNA_SECRET_KEY": secrets.token_hex(32),
        "KIZUNA_INGEST_SOURCE_CACHE_SECONDS": "60",
    }
    ports = {name: free_port() for name in ("ingest", "profile", "journey")}
    children = [serve_process(name, port, env) for name, port in ports.items()]
    children += [serve_process("journey", free_port(), env) for _ in range(journey_replicas - 1)]
    processes = {child.pid: name for child, name in zip(children, ports, strict=False)}
    processes |= {child.pid: "journey" for child in children[len(ports) :]}
    processes[os.getpid()] = "load generator"
    if postmaster_pid is not None:
        processes[postmaster_pid] = "postgres"
    if broker is not None:
        processes[broker.process.pid] = "kafka"
    ingest = POSTERS[client](ports["ingest"], write)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['journey']}") as journey:
            figures = await _run(
                ingest,
                journey,
                admin_header,
                base,
                processes,
                total,
                per_tick,
                tick_seconds,
                warmup_seconds,
                accepted,
                arrived,
            )
    finally:
        await ingest.close()
        for child in children:
            child.terminate()
        for child in children:
            child.wait(30)
    return {
        **figures,
        "warmup_seconds": warmup_seconds,
        "journey_replicas": journey_replicas,
        "client": client,
        "bus": "kafka" if broker is not None else "postgres",
    }


def shopper(probe: int) -> str:
    return f"shopper-{probe}" if probe >= 0 else f"warm-{-probe}"


async def offer(
    ingest: Poster,
    probes: range,
    per_tick: int,
    tick_seconds: float,
    accepted: dict[int, float],
) -> float:
    """Posts one ``Checkout Started`` per probe, ``per_tick`` to a post, a post every
    ``tick_seconds``; notes when each was accepted; returns how long the posting took."""
    began = time.perf_counter()
    posts: list[asyncio.Task[None]] = []
    for tick, start in enumerate(range(0, len(probes), per_tick)):
        indexes = list(probes[start : start + per_tick])
        calls = [
            {
                "type": "track",
                "userId": shopper(i),
                "event": "Checkout Started",
                "properties": {"probe": i, "value": 30},
            }
            for i in indexes
        ]

        async def send(calls: list[dict[str, Any]] = calls, indexes: list[int] = indexes) -> None:
            done = await ingest.post(calls)
            for i in indexes:
                accepted[i] = done

        posts.append(asyncio.create_task(send()))
        delay = began + (tick + 1) * tick_seconds - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.gather(*posts)
    return time.perf_counter() - began


async def _wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while not condition() and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)


async def _run(
    ingest: Poster,
    journey: httpx.AsyncClient,
    admin_header: dict[str, str],
    base: dict[str, Any],
    processes: dict[int, str],
    total: int,
    per_tick: int,
    tick_seconds: float,
    warmup_seconds: float,
    accepted: dict[int, float],
    arrived: dict[int, float],
) -> dict[str, Any]:
    rate = round(per_tick / tick_seconds)
    created = await journey.post("/v1/journeys", json=JOURNEY, headers=admin_header)
    created.raise_for_status()
    await journey.post("/v1/journeys/checkout/activate", headers=admin_header)
    warm = int(rate * warmup_seconds)
    people = [
        {"type": "identify", "userId": shopper(i), "traits": {"email": f"{shopper(i)}@example.com"}}
        for i in range(-warm, total)
    ]
    for start in range(0, len(people), 500):
        await ingest.post(people[start : start + 500])
    await asyncio.sleep(5)  # profile and journey take the identifies in
    stop = asyncio.Event()
    reader = asyncio.create_task(read_sends(KizunaSettings(**base), arrived, stop))
    await asyncio.sleep(1)
    # Warm-up: the same traffic for other customers, so that the tables the journey writes
    # (runs, steps, the log) hold rows when their statistics are gathered, as in a live system.
    await offer(ingest, range(-warm, 0), per_tick, tick_seconds, {})
    await _wait_for(lambda: sum(1 for i in arrived if i < 0) >= warm, 60)
    await gather_statistics(base["database_url"])
    await asyncio.sleep(1)
    cpu_before, processes_before = machine_cpu(), cpu_by_process(processes)
    measured_from = await database_now(base["database_url"])
    sent_for = await offer(ingest, range(total), per_tick, tick_seconds, accepted)
    await _wait_for(lambda: sum(1 for i in arrived if i >= 0) >= total, 60)
    busy = busy_share(cpu_before, machine_cpu())
    measured_until = await database_now(base["database_url"])
    cpu_us_per_event = {
        name: round((seconds - processes_before.get(name, 0.0)) / total * 1e6)
        for name, seconds in sorted(cpu_by_process(processes).items())
    }
    stop.set()
    await reader
    latencies = [arrived[i] - accepted[i] for i in accepted if i in arrived]
    on_log = base["bus_url"] == "postgres"  # the hops are read from the log's own table
    hops = await hop_medians(base["database_url"], HOPS if on_log else OUTBOX_HOP)
    per_append = (
        await messages_per_append(base["database_url"], measured_from, measured_until)
        if on_log
        else {}
    )
    baseline = await bus_round_trip(KizunaSettings(**base), 100)
    return {
        "events": total,
        "events_per_post": per_tick,
        "offered_rate": rate,
        "achieved_rate": round(total / sent_for),
        "send_requests_seen": len(latencies),
        "accepted_to_send_request_p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "accepted_to_send_request_p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
        "accepted_to_send_request_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "accepted_to_send_request_max_ms": round(max(latencies) * 1000, 1),
        "bus_round_trip_p50_ms": round(statistics.median(baseline) * 1000, 1),
        "p50_vs_bus_round_trip": round(
            statistics.median(latencies) / statistics.median(baseline), 2
        ),
        **hops,
        "cpu_count": os.cpu_count(),
        "machine_busy_while_measured": busy,
        "cpu_us_per_event_while_measured": cpu_us_per_event,
        "messages_per_append": per_append,
    }


def cpu_by_process(roots: dict[int, str]) -> dict[str, float]:
    """CPU seconds so far of each named process and its direct children (PostgreSQL's
    backends are the postmaster's), by name, from /proc (Linux; empty elsewhere). Processes
    that ended in between are missed."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        name = roots.get(int(stat.parent.name)) or roots.get(int(fields[1]))
        if name is not None:
            found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return found


def machine_cpu() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(t) for t in stat.readline().split()[1:8]]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = ticks
    return user + nice + system + irq + softirq, sum(ticks)


def busy_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] == before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 2)


async def gather_statistics(url: str) -> None:
    """The tables went from empty to thousands of rows in seconds. Without statistics the
    planner takes the timeline index for event-id look-ups; with statistics taken while a
    table was still empty, the plans the services' prepared statements cache scan it whole.
    A live database has them: autovacuum analyses a table within a minute of such growth."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


HOPS = """
WITH probes AS (
  SELECT topic, key, appended_at,
         convert_from(value, 'UTF8')::jsonb #>> '{payload,properties,probe}' AS probe
  FROM bus_messages WHERE topic LIKE '%raw-events' OR topic LIKE '%resolved-events'),
raw AS (SELECT probe, appended_at FROM probes WHERE topic LIKE '%raw-events'),
resolved AS (SELECT probe, key, appended_at FROM probes WHERE topic LIKE '%resolved-events'),
sent AS (SELECT key, appended_at FROM bus_messages WHERE topic LIKE '%send-requests')
SELECT
  percentile_cont(0.5) WITHIN GROUP (ORDER BY r.appended_at - w.appended_at) AS profile,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY s.appended_at - r.appended_at) AS journey_wait
FROM raw w JOIN resolved r USING (probe) JOIN sent s ON s.key = r.key
WHERE w.probe::int >= 0  -- not the warm-up's
"""

# On Kafka the journey's transaction writes its send requests to the outbox table, and the
# publisher's transaction sends them: the time between the two.
OUTBOX_HOP = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY published_at - created_at) AS journey_outbox
FROM jr_outbox WHERE topic = 'send-requests'
"""


async def database_now(url: str) -> datetime:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        now: datetime = await conn.fetchval("SELECT clock_timestamp()")
    finally:
        await conn.close()
    return now


async def messages_per_append(url: str, since: datetime, until: datetime) -> dict[str, float]:
    """By topic of the PostgreSQL log, messages per append while measured: each append is one
    transaction, so its rows share an ``xmin``."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT topic, count(*)::float / count(DISTINCT xmin::text) AS per_append"
            " FROM bus_messages WHERE appended_at BETWEEN $1 AND $2"
            " GROUP BY topic ORDER BY topic",
            since,
            until,
        )
    finally:
        await conn.close()
    return {row["topic"]: round(row["per_append"], 2) for row in rows}


async def hop_medians(url: str, query: str) -> dict[str, float]:
    """Where the time goes, from the times PostgreSQL stamped (each transaction's start):
    raw-events append → resolved-events append (profile) → the journey's transaction, which
    appends the send request as it commits. On Kafka: the outbox's hop only."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        row = await conn.fetchrow(query)
    finally:
        await conn.close()
    if row is None:
        return {}
    return {
        f"{name}_p50_ms": round(value.total_seconds() * 1000, 1)
        for name, value in dict(row).items()
        if value is not None
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Checkout Started to send request, end to end.")
    parser.add_argument("--rate", type=int, default=1000, help="events per second offered")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument(
        "--tick", type=float, default=0.01, help="seconds between posts (batch = rate * tick)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=5,
        help="seconds of the same traffic, for other customers, before statistics and the clock",
    )
    parser.add_argument(
        "--journey-replicas",
        type=int,
        default=1,
        help="journey processes in one consumer group (the first serves the API)",
    )
    parser.add_argument(
        "--client",
        choices=sorted(POSTERS),
        default="keep-alive",
        help="the load generator's HTTP client (keep-alive: a minimal one, lightest on CPU)",
    )
    parser.add_argument(
        "--bus",
        choices=["postgres", "kafka"],
        default="postgres",
        help="the PostgreSQL event log (embedded default) or a local Kafka broker",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kizuna-bench-journey-latency-"))
    broker = localkafka.start(workdir / "kafka") if args.bus == "kafka" else None
    server = EmbeddedPostgres(workdir / "pg", free_port()).start()
    try:
        asyncio.run(ensure_database(server.url, "bench"))
        url = server.database_url("bench")
        migrate.upgrade(url)
        figures = uvloop.run(  # as `kizuna serve` runs: the load generator shares the cores
            measure(
                url,
                args.rate,
                args.seconds,
                args.tick,
                args.warmup,
                args.journey_replicas,
                args.client,
                int((workdir / "pg" / "postmaster.pid").read_text().split()[0]),
                broker,
            )
        )
    finally:
        server.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"Checkout Started accepted → send request at {figures['achieved_rate']} events/s:"
        f" p50 {figures['accepted_to_send_request_p50_ms']} ms,"
        f" p95 {figures['accepted_to_send_request_p95_ms']} ms,"
        f" p99 {figures['accepted_to_send_request_p99_ms']} ms"
        f" ({figures['send_requests_seen']}/{figures['events']} seen;"
        f" bus round trip p50 {figures['bus_round_trip_p50_ms']} ms;"
        f" machine busy {figures['machine_busy_while_measured']} while measured)\n"
        + (
            f"p50 by hop: profile {figures.get('profile_p50_ms')} ms, to the journey's"
            f" transaction {figures.get('journey_wait_p50_ms')} ms (the rest: that transaction,"
            " its commit and the reader)\n"
            if figures["bus"] == "postgres"
            else "p50 from the journey's transaction to the outbox publisher's:"
            f" {figures.get('journey_outbox_p50_ms')} ms\n"
        )
        + "CPU per event while measured (µs): "
        + ", ".join(f"{k} {v}" for k, v in figures["cpu_us_per_event_while_measured"].items())
    )
    if figures["messages_per_append"]:
        print(
            "messages per append: "
            + ", ".join(f"{k} {v}" for k, v in figures["messages_per_append"].items())
        )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
