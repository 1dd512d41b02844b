"""Profile consumer throughput, lag recovery after a burst, and bulk import speed, on real Kafka
and PostgreSQL.

Run with ``.venv/bin/python bench/bench_profile.py [--events N] [--burst-seconds S]``
(``--quick`` for a short run). Starts a Kafka broker, an embedded PostgreSQL and
``kizuna serve profile`` (one process; ``--replicas N``: N of them in one consumer group, as
a deployment scales out). Traffic first runs through the fresh broker for ``--broker-warmup``
seconds (45), so that the broker's start-up compiling is not counted against the service.
Then:

(a) baseline: a plain bus consumer reads the same raw events and decodes every envelope;
(b) the profile service resolves, stores and republishes them: 100,000 customers, a realistic
    mix (70 % page and product views, 10 % cart, 5 % orders, 10 % mail, 5 % identify);
    The rate counts from the moment the consumer group is stable with every replica in it, so
    the replicas' start-up and the rebalance as they join are not counted; the rate from the
    first stored event on is printed too;
(c) a burst at twice the measured rate for S seconds, and how long the lag takes to reach zero
    once the burst ends;
(d) POST /v1/imports of 100,000 customers and of 100,000 orders (CSV), until completed.

Prints a summary and, last, one JSON line with events/s, the ratio b/a, and the timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient

from kizuna import auth, localkafka, migrate, topics
from kizuna.bus import OutgoingMessage
from kizuna.bus.kafka import KafkaBus
from kizuna.db import create_engine
from kizuna.devserver import serve_process
from kizuna.embedded_pg import EmbeddedPostgres, ensure_database, free_port
from kizuna.envelope import Envelope
from kizuna_profile.settings import ProfileSettings

DEFAULT_BATCH: int = ProfileSettings.model_fields["consumer_batch_size"].default

PARTITIONS = 8
SECRET_KEY = secrets.token_hex(32)
CUSTOMERS = 100_000
PREFIX = "bench."
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def make_event(i: int, rng: random.Random, workspace_id: str) -> Envelope:
    customer = rng.randrange(CUSTOMERS)
    roll = rng.random()
    identity: dict[str, Any] = {"userId": f"user-{customer}"}
    if roll < 0.70:
        if rng.random() < 0.5:
            type_, extra = "page", {"name": "Product", "properties": {"path": "/p"}}
        else:
            type_ = "track"
            extra = {
                "event": "Product Viewed",
                "properties": {"product_id": f"p-{rng.randrange(500)}", "price": 1200},
            }
    elif roll < 0.80:
        type_ = "track"
        extra = {
            "event": rng.choice(["Product Added", "Cart Viewed", "Checkout Started"]),
            "properties": {
                "product_id": f"p-{rng.randrange(500)}",
                "price": 1200,
                "products": [{"product_id": "p-1", "price": 1200}],
            },
        }
    elif roll < 0.85:
        type_ = "track"
        extra = {
            "event": "Order Completed",
            "properties": {"order_id": f"o-{i}", "total": rng.randrange(1000, 20000)},
        }
    elif roll < 0.95:
        type_ = "track"
        extra = {
            "event": rng.choice(["Email Opened", "Email Link Clicked"]),
            "properties": {"message_id": f"s-{rng.randrange(10_000)}"},
        }
    else:
        type_ = "identify"
        identity["anonymousId"] = f"anon-{customer}-{rng.randrange(3)}"
        extra = {"traits": {"email": f"user{customer}@example.com", "plan": "basic"}}
    when = T0 + timedelta(seconds=i)
    event_id = str(uuid.uuid4())
    return Envelope(
        id=event_id,
        type=type_,
        workspace_id=workspace_id,
        customer_key=identity["userId"],
        occurred_at=when,
        received_at=when,
        payload={"type": type_, "messageId": event_id, **identity, **extra,
                 "context": {"library": {"name": "analytics.js"}}},
    )  # fmt: skip


async def publish(bus: KafkaBus, events: list[Envelope]) -> None:
    for start in range(0, len(events), 2000):
        await bus.publish_batch(
            topics.RAW_EVENTS,
            [OutgoingMessage(e.bus_key, e.to_bytes()) for e in events[start : start + 2000]],
        )


async def warm_up_broker(bus: KafkaBus, seconds: float, workspace_id: str) -> None:
    """Events through the broker (published, consumed, published again) for ``seconds``: a
    broker fresh from start spends its first minute compiling its hot paths, at up to half a
    core here, which a long-running broker does not. Done on topics of their own."""
    if seconds <= 0:
        return
    topic = "warm-up"
    await bus.ensure_topics([topic, f"{topic}-out"])
    rng = random.Random(3)
    events = [make_event(i, rng, workspace_id) for i in range(20_000)]
    messages = [OutgoingMessage(e.bus_key, e.to_bytes()) for e in events]
    consumer = bus.consumer(f"warm-up-{uuid.uuid4().hex[:6]}", [topic])
    await consumer.start()
    try:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for start in range(0, len(messages), 2000):
                await bus.publish_batch(topic, messages[start : start + 2000])
            seen = 0
            while seen < len(messages):
                batch = await consumer.fetch(1000, 1.0)
                seen += len(batch)
                if batch:
                    await bus.publish_batch(
                        f"{topic}-out", [OutgoingMessage(m.key, m.value) for m in batch]
                    )
                    await consumer.commit(batch)
    finally:
        await consumer.close()


async def baseline(bus: KafkaBus, total: int) -> float:
    """Reading and decoding the same events with a plain bus consumer."""
    consumer = bus.consumer(f"baseline-{uuid.uuid4().hex[:6]}", [topics.RAW_EVENTS])
    await consumer.start()
    seen = 0
    started = time.perf_counter()
    try:
        while seen < total:
            batch = await consumer.fetch(1000, 1.0)
            for message in batch:
                Envelope.from_bytes(message.value)
            seen += len(batch)
            if batch:
                await consumer.commit(batch)
    finally:
        await consumer.close()
    return total / (time.perf_counter() - started)


def start_profile(
    url: str, bootstrap: str, port: int, batch_size: int | None
) -> subprocess.Popen[bytes]:
    env = {
        "KIZUNA_DATABASE_URL": url,
        "KIZUNA_BUS_URL": f"kafka://{bootstrap}",
        "KIZUNA_TOPIC_PREFIX": PREFIX,
        "KIZUNA_BUS_PARTITIONS": str(PARTITIONS),
        "KIZUNA_LOG_LEVEL": "WARNING",
        "KIZUNA_SECRET_KEY": SECRET_KEY,  # the same for every replica
    }
    if batch_size is not None:
        env["KIZUNA_CONSUMER_BATCH_SIZE"] = str(batch_size)
    return serve_process("profile", port, env)


async def stored(engine: Any) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(sa.text("SELECT count(*) FROM profile_events")) or 0)


async def wait_stored(engine: Any, target: int, timeout: float = 1800) -> float:
    started = time.perf_counter()
    while await stored(engine) < target:
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"only {await stored(engine)} of {target} stored")
        await asyncio.sleep(0.25)
    return time.perf_counter() - started


async def group_settled(bootstrap: str, group: str, members: int, timeout: float = 180) -> None:
    """Until the consumer group is ``Stable`` with ``members`` members."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            for response in await admin.describe_consumer_groups([group]):
                for described in response.groups:
                    # (error_code, group_id, state, protocol_type, protocol, members, ...)
                    if described[2] == "Stable" and len(described[5]) == members:
                        return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"group {group!r} did not settle with {members} members")
    finally:
        await admin.close()


async def steady_rate(
    engine: Any, bootstrap: str, replicas: int, target: int, timeout: float = 1800
) -> dict[str, float]:
    """Events stored per second once every replica has joined the group and the rebalance
    that follows has settled: the replicas' start-up (imports, joining the group, the first
    member consuming alone and then giving partitions away) is not the consumer's throughput.
    Also the rate from the first stored event on, start-up included, as measured before."""
    started = time.perf_counter()
    while (first := await stored(engine)) == 0:
        if time.perf_counter() - started > timeout:
            raise RuntimeError("nothing stored")
        await asyncio.sleep(0.05)
    since_first = time.perf_counter()
    await group_settled(bootstrap, "profile", replicas)
    settled, since_settled = await stored(engine), time.perf_counter()
    if settled >= target * 0.8:
        raise RuntimeError("the group settled too late to measure: offer more --events")
    await wait_stored(engine, target, timeout)
    ended = time.perf_counter()
    return {
        "profile_events_s": (target - settled) / (ended - since_settled),
        "from_first_stored_events_s": (target - first) / (ended - since_first),
        "settled_after_seconds": since_settled - since_first,
    }


async def burst(
    bus: KafkaBus, engine: Any, rate: float, seconds: float, offset: int, ws: str
) -> dict[str, float]:
    rng = random.Random(2)
    per_tick = max(int(rate / 10), 1)
    sent = 0
    started = time.perf_counter()
    tick = 0
    while time.perf_counter() - started < seconds:
        events = [make_event(offset + sent + i, rng, ws) for i in range(per_tick)]
        await publish(bus, events)
        sent += per_tick
        tick += 1
        delay = started + tick / 10 - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    burst_seconds = time.perf_counter() - started
    caught_up = await wait_stored(engine, offset + sent)
    return {
        "burst_events": sent,
        "burst_seconds": round(burst_seconds, 1),
        "burst_offered_events_s": round(sent / burst_seconds),
        "lag_recovery_seconds": round(caught_up, 1),
    }


def csv_files(workdir: Path, rows: int) -> tuple[Path, Path]:
    customers = workdir / "customers.csv"
    with customers.open("w") as out:
        out.write("user_id,email,first_name,birthday,plan\n")
        for i in range(rows):
            out.write(f"imp-{i},imp{i}@example.com,Name{i},1990-01-{1 + i % 28:02d},gold\n")
    orders = workdir / "orders.csv"
    with orders.open("w") as out:
        out.write("order_id,user_id,ordered_at,total,currency\n")
        for i in range(rows):
            out.write(f"imp-o-{i},imp-{i % 50_000},2025-0{1 + i % 9}-15,{1000 + i % 5000},JPY\n")
    return customers, orders


async def import_file(port: int, admin_key: str, kind: str, path: Path) -> float:
    headers = {"Authorization": f"Bearer {admin_key}", "Content-Type": "text/csv"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        content = await asyncio.to_thread(path.read_bytes)
        started = time.perf_counter()
        response = await client.post(
            "/v1/imports", params={"kind": kind}, content=content, headers=headers
        )
        response.raise_for_status()
        status_url = response.json()["status_url"]
        while True:
            body = (await client.get(status_url, headers=headers)).json()
            if body["status"] in ("completed", "failed", "interrupted"):
                break
            await asyncio.sleep(0.25)
        if body["status"] != "completed" or body["rows_rejected"]:
            raise RuntimeError(f"import {kind}: {body}")
        return time.perf_counter() - started


async def setup_workspace(url: str) -> tuple[str, str]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            workspace_id = await auth.create_workspace(conn, "bench")
            key = await auth.issue_key(conn, workspace_id, "admin", "bench")
    finally:
        await engine.dispose()
    return workspace_id, key.secret


async def measure(
    args: argparse.Namespace, url: str, bootstrap: str, workdir: Path
) -> dict[str, Any]:
    workspace_id, admin_key = await setup_workspace(url)
    rng = random.Random(1)
    events = [make_event(i, rng, workspace_id) for i in range(args.events)]
    bus = KafkaBus(bootstrap, PREFIX, PARTITIONS)
    await bus.start()
    await bus.ensure_topics(topics.ALL_TOPICS)
    engine = create_engine(url, pool_size=2)
    port = free_port()
    replicas: list[subprocess.Popen[bytes]] = []
    try:
        await warm_up_broker(bus, args.broker_warmup, workspace_id)
        await publish(bus, events)
        ceiling = await baseline(bus, len(events))
        replicas.append(start_profile(url, bootstrap, port, args.batch_size))
        replicas += [
            start_profile(url, bootstrap, free_port(), args.batch_size)
            for _ in range(args.replicas - 1)
        ]
        rates = await steady_rate(engine, bootstrap, args.replicas, len(events))
        rate = rates["profile_events_s"]
        figures: dict[str, Any] = {
            "events": len(events),
            "customers": CUSTOMERS,
            "replicas": args.replicas,
            "batch_size": args.batch_size or DEFAULT_BATCH,
            "broker_warmup_seconds": args.broker_warmup,
            "baseline_consume_decode_events_s": round(ceiling),
            "profile_events_s": round(rate),
            "profile_vs_baseline": round(rate / ceiling, 3),
            "from_first_stored_events_s": round(rates["from_first_stored_events_s"]),
            "group_settled_after_seconds": round(rates["settled_after_seconds"], 1),
        }
        figures.update(
            await burst(bus, engine, 2 * rate, args.burst_seconds, len(events), workspace_id)
        )
        figures["import_rows"] = args.import_rows
        if args.import_rows > 0:
            customers_csv, orders_csv = csv_files(workdir, args.import_rows)
            figures["import_customers_seconds"] = round(
                await import_file(port, admin_key, "customers", customers_csv), 1
            )
            figures["import_orders_seconds"] = round(
                await import_file(port, admin_key, "orders", orders_csv), 1
            )
        figures["cpu_count"] = os.cpu_count()
        return figures
    finally:
        for replica in replicas:
            replica.send_signal(signal.SIGTERM)
        for replica in replicas:
            replica.wait(60)
        await bus.close()
        await engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--burst-seconds", type=float, default=60)
    parser.add_argument("--import-rows", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="50k events, 10 s burst, 20k rows")
    parser.add_argument(
        "--replicas", type=int, default=1, help="profile processes in one consumer group"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="KIZUNA_CONSUMER_BATCH_SIZE for the replicas (default: the service's own)",
    )
    parser.add_argument(
        "--broker-warmup",
        type=float,
        default=45,
        help="seconds of traffic through the fresh broker before anything is measured",
    )
    args = parser.parse_args()
    if args.quick:
        args.events, args.burst_seconds, args.import_rows = 50_000, 10, 20_000
    workdir = Path(tempfile.mkdtemp(prefix="kizuna-bench-profile-"))
    broker = localkafka.start(workdir / "kafka")
    server = EmbeddedPostgres(workdir / "pg", free_port()).start()
    try:
        asyncio.run(ensure_database(server.url, "bench"))
        url = server.database_url("bench")
        migrate.upgrade(url)
        figures = asyncio.run(measure(args, url, broker.bootstrap, workdir))
    finally:
        server.stop()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"baseline (consume + decode) {figures['baseline_consume_decode_events_s']:>8} events/s\n"
        f"profile consumer            {figures['profile_events_s']:>8} events/s "
        f"= {figures['profile_vs_baseline']:.2f} of baseline (group settled"
        f" {figures['group_settled_after_seconds']} s after the first event was stored;"
        f" {figures['from_first_stored_events_s']} events/s counting from that event)\n"
        f"burst {figures['burst_events']} events at {figures['burst_offered_events_s']}/s"
        f" for {figures['burst_seconds']} s:"
        f" lag back to zero {figures['lag_recovery_seconds']} s after"
    )
    if figures["import_rows"]:
        print(
            f"import {figures['import_rows']} customers {figures['import_customers_seconds']} s,"
            f" {figures['import_rows']} orders {figures['import_orders_seconds']} s"
        )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
