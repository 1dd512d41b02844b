"""Bus throughput: Kizuna's two buses against a plain aiokafka producer, on real infrastructure.

Run it with ``.venv/bin/python bench/bench_bus.py`` (or ``make bench``). It starts its own Kafka
broker and PostgreSQL server, measures, stops them, prints a summary and, as its last line, one
JSON object with the figures. See docs/benchmarks.md.

Measured, with the same ~700-byte envelopes and the same keys everywhere:

(a) producer ceiling: one plain ``AIOKafkaProducer`` (acks=all, idempotent, linger 2 ms) sending
    N messages to an 8-partition topic and awaiting every delivery future;
(a2) informational: the same producer driven like the buses (8 tasks, batches of 100, each
    batch awaited), to tell the bus's own cost from the effect of the publishing pattern;
(b) ``KafkaBus.publish_batch``: batches of 100, 8 concurrent publisher tasks;
(c) ``PostgresLogBus.publish_batch``: the same pattern;
(d) each bus's consumer: ``fetch(500, 1.0)`` then ``commit`` until all N are consumed. The rate
    is the steady state, timed from the first non-empty batch; the time to get there (group
    join, partition assignment) is reported apart as ``*_consume_startup_s``.

Every consumed set is checked against the published one (nothing lost, nothing duplicated,
offsets increasing per partition), and the group's lag must be 0 after the last commit.

The broker is warmed up first (one unmeasured producer run: a cold JVM is markedly slower),
then (a)-(d) run ROUNDS times on fresh topics and groups; each figure is the median.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from kizuna import localkafka, migrate
from kizuna.bus import Bus, BusMessage, OutgoingMessage
from kizuna.bus.kafka import KafkaBus
from kizuna.bus.pglog import PostgresLogBus
from kizuna.embedded_pg import EmbeddedPostgres, ensure_database, free_port
from kizuna.envelope import Envelope

PARTITIONS = 8
N_KAFKA = 50_000
N_PGLOG = 50_000
ROUNDS = 5  # each figure is the median of the rounds; the broker is warmed up before round 1
BATCH = 100
PUBLISHERS = 8
FETCH_MAX = 500
FETCH_TIMEOUT = 1.0
WARMUP = 500
PHASE_TIMEOUT = 120.0  # seconds; a phase that takes longer is a failure, not a slow result
TOPIC = "bench"
WARMUP_TOPIC = "bench-warmup"
GROUP = "bench-group"
PHASES = (
    "producer",
    "producer_concurrent",
    "kafka_publish",
    "kafka_consume",
    "pglog_publish",
    "pglog_consume",
)

PRODUCTS = ["tea-set", "kimono", "sake-cup", "furoshiki", "tenugui", "bento-box", "noren"]
CATEGORIES = ["kitchen", "apparel", "home", "gifts"]
USER_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)


def build_messages(n: int) -> list[OutgoingMessage]:
    """Realistic ``track`` envelopes, 5,000 distinct customers, about 700 bytes each."""
    messages = []
    for i in range(n):
        product = PRODUCTS[i % len(PRODUCTS)]
        envelope = Envelope.new(
            "track",
            "ws_bench",
            f"user-{i % 5000}",
            {
                "event": "Product Viewed",
                "properties": {
                    "product_id": f"prod-{i % 997:04d}",
                    "name": product,
                    "category": CATEGORIES[i % len(CATEGORIES)],
                    "price": 1200 + (i % 50) * 100,
                    "currency": "JPY",
                    "url": f"https://shop.example.jp/products/{product}?ref=bench&i={i}",
                },
                "context": {
                    "ip": f"203.0.113.{i % 250}",
                    "locale": "ja-JP",
                    "userAgent": USER_AGENT,
                    "page": {"path": f"/products/{product}", "referrer": "https://t.co/"},
                },
            },
        )
        messages.append(OutgoingMessage(envelope.bus_key, envelope.to_bytes()))
    return messages


def batches(messages: Sequence[OutgoingMessage], size: int) -> Iterator[Sequence[OutgoingMessage]]:
    for start in range(0, len(messages), size):
        yield messages[start : start + size]


@dataclass
class Result:
    rate: float | None = None  # messages per second
    seconds: float | None = None
    startup_s: float | None = None  # consume only: start() until the first non-empty batch
    error: str | None = None


Samples = dict[str, list[Result]]


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def producer_ceiling(
    bootstrap: str, prefix: str, messages: list[OutgoingMessage], *, concurrent: bool = False
) -> Result:
    """(a): one loop sending every message, then awaiting every delivery future.

    With ``concurrent``, the same producer is driven like the buses are (PUBLISHERS tasks,
    batches of BATCH, each batch awaited): an informational figure, not the ratios' base.
    """
    topic = f"{prefix}producer-{'concurrent' if concurrent else 'baseline'}"
    await create_topic(bootstrap, topic, PARTITIONS)
    await create_topic(bootstrap, f"{topic}-warmup", PARTITIONS)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2
    )
    await producer.start()

    async def send_all(name: str, chunk: Sequence[OutgoingMessage]) -> None:
        futures = [await producer.send(name, m.value, key=m.key.encode()) for m in chunk]
        await asyncio.gather(*futures)

    try:
        await send_all(f"{topic}-warmup", messages[:WARMUP])
        work = batches(messages, BATCH)

        async def publisher() -> None:
            for chunk in work:
                await send_all(topic, chunk)

        started = time.perf_counter()
        if concurrent:
            await asyncio.gather(*(publisher() for _ in range(PUBLISHERS)))
        else:
            await send_all(topic, messages)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return Result(rate=len(messages) / elapsed, seconds=elapsed)


async def bus_publish(bus: Bus, messages: list[OutgoingMessage]) -> Result:
    """Batches of BATCH messages taken from one shared queue by PUBLISHERS concurrent tasks."""
    await bus.ensure_topics([TOPIC, WARMUP_TOPIC])
    for chunk in batches(messages[:WARMUP], BATCH):
        await bus.publish_batch(WARMUP_TOPIC, chunk)
    work = batches(messages, BATCH)

    async def publisher() -> None:
        for chunk in work:  # one iterator shared by every task: each batch goes out once
            await bus.publish_batch(TOPIC, chunk)

    started = time.perf_counter()
    await asyncio.gather(*(publisher() for _ in range(PUBLISHERS)))
    elapsed = time.perf_counter() - started
    return Result(rate=len(messages) / elapsed, seconds=elapsed)


def check_consumed(published: list[OutgoingMessage], consumed: list[BusMessage]) -> None:
    """Raise unless ``consumed`` is exactly ``published``, once each, in offset order."""
    if len(consumed) != len(published):
        raise AssertionError(f"consumed {len(consumed)} messages, published {len(published)}")
    positions = {(m.partition, m.offset) for m in consumed}
    if len(positions) != len(consumed):
        raise AssertionError(f"{len(consumed) - len(positions)} duplicate (partition, offset)")
    last: dict[int, int] = {}
    for message in consumed:
        if message.offset <= last.get(message.partition, -1):
            raise AssertionError(f"offsets went backwards in partition {message.partition}")
        last[message.partition] = message.offset
    if Counter((m.key, m.value) for m in consumed) != Counter((m.key, m.value) for m in published):
        raise AssertionError("the consumed keys/values differ from the published ones")


async def bus_consume(bus: Bus, published: list[OutgoingMessage]) -> Result:
    consumer = bus.consumer(GROUP, [TOPIC])
    begun = time.perf_counter()
    await consumer.start()
    consumed: list[BusMessage] = []
    first_batch = 0
    steady_from = 0.0
    try:
        while len(consumed) < len(published):
            batch = await consumer.fetch(FETCH_MAX, FETCH_TIMEOUT)
            if not batch:
                continue
            await consumer.commit(batch)
            if not consumed:
                steady_from = time.perf_counter()
                first_batch = len(batch)
            consumed.extend(batch)
        finished = time.perf_counter()
        lag = await consumer.lag()
    finally:
        await consumer.close()
    check_consumed(published, consumed)
    if lag != 0:
        raise AssertionError(f"lag is {lag} after committing everything")
    elapsed = finished - steady_from
    return Result(
        rate=(len(consumed) - first_batch) / elapsed if elapsed > 0 else None,
        seconds=elapsed,
        startup_s=steady_from - begun,
    )


async def guarded(name: str, phase: Awaitable[Result]) -> Result:
    try:
        async with asyncio.timeout(PHASE_TIMEOUT):
            result = await phase
    except Exception as error:
        print(f"   {name:<28} FAILED", flush=True)
        traceback.print_exc()
        return Result(error=f"{type(error).__name__}: {error}")
    print(
        f"   {name:<28} {result.rate or 0:>9,.0f} msg/s  ({result.seconds or 0:.2f} s)", flush=True
    )
    return result


async def one_bus(
    label: str, key: str, bus: Bus, messages: list[OutgoingMessage], samples: Samples
) -> None:
    await bus.start()
    try:
        published = await guarded(f"{label} publish", bus_publish(bus, messages))
        samples[f"{key}_publish"].append(published)
        if published.error is None:
            consumed = await guarded(f"{label} consume", bus_consume(bus, messages))
        else:
            consumed = Result(error="skipped: publish failed")
        samples[f"{key}_consume"].append(consumed)
    finally:
        await bus.close()


async def run_all(
    bootstrap: str,
    url: str,
    kafka_messages: list[OutgoingMessage],
    pg_messages: list[OutgoingMessage],
) -> Samples:
    samples: Samples = {phase: [] for phase in PHASES}
    print("Warming the broker up (not measured) ...", flush=True)
    await guarded("aiokafka producer", producer_ceiling(bootstrap, "warm.", kafka_messages))
    for r in range(1, ROUNDS + 1):
        print(f"Round {r}/{ROUNDS}", flush=True)
        samples["producer"].append(
            await guarded(
                "aiokafka producer", producer_ceiling(bootstrap, f"raw{r}.", kafka_messages)
            )
        )
        samples["producer_concurrent"].append(
            await guarded(
                "aiokafka producer, 8x100",
                producer_ceiling(bootstrap, f"raw{r}.", kafka_messages, concurrent=True),
            )
        )
        kafka = KafkaBus(bootstrap, f"kbus{r}.", partitions=PARTITIONS)
        await one_bus("KafkaBus", "kafka", kafka, kafka_messages, samples)
        pglog = PostgresLogBus(dsn=url, topic_prefix=f"pbus{r}.", partitions=PARTITIONS)
        await one_bus("PostgresLogBus", "pglog", pglog, pg_messages, samples)
    return samples


def summarise(runs: list[Result]) -> Result:
    """The median of the rounds; any failed round fails the measurement."""
    failed = [r.error for r in runs if r.error is not None]
    if failed or not runs:
        return Result(error=failed[0] if failed else "not run")
    startups = [r.startup_s for r in runs if r.startup_s is not None]
    return Result(
        rate=statistics.median(r.rate or 0.0 for r in runs),
        seconds=statistics.median(r.seconds or 0.0 for r in runs),
        startup_s=statistics.median(startups) if startups else None,
    )


def ratio(numerator: Result, denominator: Result) -> float | None:
    if numerator.rate is None or not denominator.rate:
        return None
    return round(numerator.rate / denominator.rate, 3)


def rounded(value: float | None, digits: int = 0) -> float | None:
    return None if value is None else round(value, digits)


def report(samples: Samples, message_bytes: float, setup_s: float) -> dict[str, Any]:
    results = {phase: summarise(runs) for phase, runs in samples.items()}
    producer = results["producer"]
    figures: dict[str, Any] = {
        "benchmark": "bus",
        "producer_msg_s": rounded(producer.rate),
        "producer_concurrent_msg_s": rounded(results["producer_concurrent"].rate),
        "kafka_bus_publish_msg_s": rounded(results["kafka_publish"].rate),
        "pglog_publish_msg_s": rounded(results["pglog_publish"].rate),
        "kafka_consume_msg_s": rounded(results["kafka_consume"].rate),
        "pglog_consume_msg_s": rounded(results["pglog_consume"].rate),
        "kafka_bus_publish_vs_producer": ratio(results["kafka_publish"], producer),
        "pglog_publish_vs_producer": ratio(results["pglog_publish"], producer),
        "kafka_consume_vs_producer": ratio(results["kafka_consume"], producer),
        "pglog_consume_vs_producer": ratio(results["pglog_consume"], producer),
        "kafka_bus_publish_vs_producer_concurrent": ratio(
            results["kafka_publish"], results["producer_concurrent"]
        ),
        "kafka_consume_startup_s": rounded(results["kafka_consume"].startup_s, 3),
        "pglog_consume_startup_s": rounded(results["pglog_consume"].startup_s, 3),
        "n_kafka": N_KAFKA,
        "n_pglog": N_PGLOG,
        "rounds": ROUNDS,
        "statistic": "median",
        "samples_msg_s": {
            phase: [rounded(r.rate) for r in runs] for phase, runs in samples.items()
        },
        "partitions": PARTITIONS,
        "batch": BATCH,
        "publishers": PUBLISHERS,
        "fetch_max": FETCH_MAX,
        "message_bytes_avg": round(message_bytes, 1),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "setup_s": round(setup_s, 1),
        "errors": {name: r.error for name, r in results.items() if r.error is not None},
    }

    def line(label: str, phase: str, n: int) -> str:
        result = results[phase]
        if result.error is not None:
            return f"  {label:<28} FAILED: {result.error}"
        rates = [r.rate or 0.0 for r in samples[phase]]
        versus = ratio(result, producer)
        versus_text = "" if versus is None or phase == "producer" else f"  x{versus:.2f} of (a)"
        return (
            f"  {label:<28} {result.rate or 0:>9,.0f} msg/s"
            f"  [{min(rates):,.0f} .. {max(rates):,.0f}]  N={n:,}{versus_text}"
        )

    print()
    print(
        f"Bus throughput: median of {ROUNDS} rounds [min .. max], {os.cpu_count()} CPUs,"
        f" ~{message_bytes:.0f}-byte envelopes, {PARTITIONS} partitions"
    )
    print(line("(a) aiokafka producer", "producer", N_KAFKA))
    print(line("(a2) same producer, 8x100", "producer_concurrent", N_KAFKA))
    print(line("(b) KafkaBus publish", "kafka_publish", N_KAFKA))
    print(line("(c) PostgresLogBus publish", "pglog_publish", N_PGLOG))
    print(line("(d) KafkaBus consume", "kafka_consume", N_KAFKA))
    print(line("(d) PostgresLogBus consume", "pglog_consume", N_PGLOG))
    for phase in ("kafka_consume", "pglog_consume"):
        startup = results[phase].startup_s
        if startup is not None:
            print(f"      {phase}: {startup:.2f} s from start() to the first batch (not in rate)")
    return figures


def main() -> int:
    setup_started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="kizuna-bench-"))
    broker: localkafka.LocalKafka | None = None
    server: EmbeddedPostgres | None = None
    try:
        print("Building envelopes ...", flush=True)
        messages = build_messages(max(N_KAFKA, N_PGLOG))
        message_bytes = sum(len(m.value) for m in messages) / len(messages)
        print("Starting Kafka and PostgreSQL ...", flush=True)
        broker = localkafka.start()
        server = EmbeddedPostgres(workdir / "pg", free_port()).start()
        asyncio.run(ensure_database(server.url, "bench"))
        url = server.database_url("bench")
        migrate.upgrade(url)
        setup_s = time.perf_counter() - setup_started
        samples = asyncio.run(
            run_all(broker.bootstrap, url, messages[:N_KAFKA], messages[:N_PGLOG])
        )
    finally:
        if broker is not None:
            broker.stop()
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    figures = report(samples, message_bytes, setup_s)
    print(json.dumps(figures), flush=True)
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
