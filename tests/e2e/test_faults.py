"""Whole-system faults (issue #10): the five services as `kizuna serve` processes on their own
Kafka broker and their own PostgreSQL, a real SMTP server, and a steady stream of tracking
calls posted to ingest's `/v1/batch` the way a Segment client does (a batch answered with
anything but 200 is posted again, same messageIds, before the lane goes on). While the stream
runs, each service in turn is SIGKILLed and started again on its port, the broker is stopped
and started again on its data directory, and so is PostgreSQL.

Afterwards, once the pipeline has drained:

- every event ingest answered 200 for is stored in profile exactly once, and each customer's
  record counts exactly its own events and orders (no customer split in two);
- the segmenter's RFM facts (frequency, monetary, lifetime orders and revenue) equal a
  recomputation from the orders the test sent, and its order ledger holds exactly those;
- the journey "first order → thank-you mail" (entry `once`) ran exactly once per customer who
  ordered, started by that customer's first `Order Completed`, its send step executed once,
  and never for a customer who did not order;
- the SMTP server received exactly one message (one Message-ID) per customer who ordered and
  none for the others. The notifier is killed, and PostgreSQL stopped, at a moment when mails
  are out that its ledger still has as `sending`; a second copy (same Message-ID) may only be
  one of those in flight at the kill, none of those in flight when the database went away
  (docs/guarantees.md, "Whole-system faults");
- nothing went to dead-letter."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import random
import shutil
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiosmtpd.controller import Controller

from kizuna import localkafka, migrate, topics
from kizuna.db import create_engine
from kizuna.devserver import serve_process
from kizuna.embedded_pg import EmbeddedPostgres, ensure_database, free_port
from kizuna_journey.work import run_id_for
from tests.helpers import make_workspace
from tests.integration.notifier.conftest import Inbox

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

EVENTS = 50_000
CUSTOMERS = 3_000
NON_BUYERS = 300  # customers who never order: no run, no mail
RATE = 300  # events offered per second: EVENTS / RATE ≈ 167 s of stream
LANES = 4  # concurrent posters; each customer's calls go through one lane, in order
MAX_BATCH = 500
TICK = 0.1
RETRY_SECONDS = 1.0
AIM_SECONDS = 20.0  # how long to wait for mails out but not recorded before a fault
SMTP_SECONDS = 0.02  # the SMTP server's time per message: a batch is in flight a while
GIVE_UP_SECONDS = 120.0  # a batch still refused after this is reported, not retried forever
PARTITIONS = 4
PREFIX = "kizuna."
JOURNEY = "first-order"
SERVICES = ("ingest", "profile", "segmenter", "journey", "notifier")
START_TIMEOUT = 90.0
DOWN_SECONDS = 3.0  # how long the broker and the database stay away
DRAIN_TIMEOUT = 150.0
SETTLE_SECONDS = 5.0


@dataclass
class Stream:
    """What the test sends: each customer's calls in their own order, interleaved."""

    emails: dict[str, str]  # user id → address
    calls: list[dict[str, Any]]
    orders: dict[str, tuple[str, Decimal]]  # order id → (user id, total)
    first_order: dict[str, str]  # user id → messageId of their first Order Completed

    @property
    def buyers(self) -> set[str]:
        return set(self.first_order)


def plan_stream(seed: int = 10) -> Stream:
    rng = random.Random(seed)
    users = [f"u{i:05d}" for i in range(CUSTOMERS)]
    non_buyers = set(rng.sample(users, NON_BUYERS))
    extra: dict[str, int] = dict.fromkeys(users, 1)  # besides the identify, at least one call
    for _ in range(EVENTS - 2 * CUSTOMERS):
        extra[rng.choice(users)] += 1
    timed: list[tuple[float, int, dict[str, Any]]] = []
    emails: dict[str, str] = {}
    orders: dict[str, tuple[str, Decimal]] = {}
    first_order: dict[str, str] = {}
    for user in users:
        emails[user] = f"{user}@shop.example"
        start = rng.uniform(0, 0.75)
        times = [start, *sorted(start + rng.uniform(0, 0.25) for _ in range(extra[user]))]
        buys = user not in non_buyers
        kinds = [
            "order" if buys and rng.random() < 0.2 else rng.choice(("view", "add"))
            for _ in range(extra[user])
        ]
        if buys and "order" not in kinds:
            kinds[rng.randrange(len(kinds))] = "order"
        calls: list[dict[str, Any]] = [
            {
                "type": "identify",
                "userId": user,
                "traits": {"email": emails[user], "first_name": user.upper()},
            }
        ]
        for kind in kinds:
            product = {"product_id": f"p{rng.randrange(40)}", "price": rng.randrange(300, 5000)}
            if kind == "order":
                order_id = f"{user}-o{len(calls)}"
                total = Decimal(rng.randrange(50_000, 2_000_000)) / 100
                orders[order_id] = (user, total)
                calls.append(
                    {
                        "type": "track",
                        "userId": user,
                        "event": "Order Completed",
                        "properties": {
                            "order_id": order_id,
                            "total": float(total),
                            "currency": "JPY",
                            "products": [product],
                        },
                    }
                )
            else:
                name = "Product Viewed" if kind == "view" else "Product Added"
                calls.append(
                    {"type": "track", "userId": user, "event": name, "properties": product}
                )
        for index, (at, call) in enumerate(zip(times, calls, strict=True)):
            call["messageId"] = f"m-{user}-{index:03d}"
            if call.get("event") == "Order Completed":
                first_order.setdefault(user, call["messageId"])
            timed.append((at, index, call))
    timed.sort(key=lambda item: (item[0], item[1]))
    return Stream(emails, [call for _, _, call in timed], orders, first_order)


def lane_of(call: dict[str, Any]) -> int:
    return int(call["userId"][1:]) % LANES


@dataclass
class Sender:
    """Posts released calls to ingest, lane by lane; a batch not answered 200 is posted again
    (same body, same messageIds) until it is, and only then does its lane go on."""

    ingest_url: str
    write_key: str
    accepted: set[str] = field(default_factory=set)
    given_up: list[str] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    rejected: list[Any] = field(default_factory=list)
    queues: list[list[dict[str, Any]]] = field(default_factory=lambda: [[] for _ in range(LANES)])
    wake: list[asyncio.Event] = field(
        default_factory=lambda: [asyncio.Event() for _ in range(LANES)]
    )
    released_all: bool = False

    async def release(self, calls: list[dict[str, Any]], rate: float) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        released = 0
        while released < len(calls):
            due = min(len(calls), int((loop.time() - started) * rate) + 1)
            stamp = datetime.now(UTC).isoformat()
            for call in calls[released:due]:
                lane = lane_of(call)
                self.queues[lane].append({**call, "timestamp": stamp})
                self.wake[lane].set()
            released = due
            await asyncio.sleep(TICK)
        self.released_all = True
        for event in self.wake:
            event.set()

    async def lane(self, index: int) -> None:
        auth = base64.b64encode(f"{self.write_key}:".encode()).decode()
        queue = self.queues[index]
        async with httpx.AsyncClient(
            base_url=self.ingest_url,
            headers={"Authorization": f"Basic {auth}"},
            timeout=httpx.Timeout(20.0),
        ) as client:
            while True:
                if not queue:
                    if self.released_all:
                        return
                    self.wake[index].clear()
                    await self.wake[index].wait()
                    continue
                batch = queue[:MAX_BATCH]
                del queue[:MAX_BATCH]
                await self._post_until_accepted(client, batch)

    async def _post_until_accepted(
        self, client: httpx.AsyncClient, batch: list[dict[str, Any]]
    ) -> None:
        body = {"batch": batch}
        deadline = asyncio.get_running_loop().time() + GIVE_UP_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            try:
                response = await client.post("/v1/batch", json=body)
            except httpx.TransportError as error:
                self.answers[type(error).__name__] += 1
            else:
                self.answers[str(response.status_code)] += 1
                if response.status_code == 200:
                    answer = response.json()
                    if answer.get("rejected"):
                        self.rejected.extend(answer["rejected"])
                    self.accepted.update(call["messageId"] for call in batch)
                    return
            await asyncio.sleep(RETRY_SECONDS)
        self.given_up.extend(call["messageId"] for call in batch)

    async def progress(self, lanes: list[asyncio.Task[None]]) -> None:
        """A line every few seconds, shown when the test fails."""
        started = time.monotonic()
        while not all(lane.done() for lane in lanes):
            await asyncio.sleep(10)
            waiting = sum(len(queue) for queue in self.queues)
            print(
                f"{time.monotonic() - started:6.1f}s accepted {len(self.accepted)},"
                f" queued {waiting}, answers {dict(self.answers)}",
                flush=True,
            )


@dataclass
class System:
    env: dict[str, str]
    ports: dict[str, int]
    inbox: SlowInbox
    database_url: str
    pg: EmbeddedPostgres
    kafka_dir: Path
    broker: localkafka.LocalKafka
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # send ids the notifier's ledger said were being sent when it was killed: the only ones
    # that may reach the SMTP server twice
    killed_in_flight: set[str] = field(default_factory=set)
    stopped_in_flight: set[str] = field(default_factory=set)  # ... when PostgreSQL stopped
    timeline: list[str] = field(default_factory=list)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    async def start(self, service: str) -> None:
        self.procs[service] = await asyncio.to_thread(
            serve_process, service, self.ports[service], self.env, timeout=START_TIMEOUT
        )

    async def kill_and_restart(self, service: str) -> str:
        process = self.procs[service]
        note = ""
        if service != "notifier":
            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.wait)
        else:
            conn = await asyncpg.connect(self.database_url)
            try:
                # Aim at the one window in which a mail can go out twice: a send the SMTP
                # server has taken that the ledger does not record as sent yet.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(AIM_SECONDS):
                        while not await _sending(conn) & self.inbox.taken():
                            await asyncio.sleep(0.005)
                process.send_signal(signal.SIGKILL)
                await asyncio.to_thread(process.wait)
                sending = await _sending(conn)
            finally:
                await conn.close()
            self.killed_in_flight |= sending
            received = len(sending & self.inbox.taken())
            note = f"; {len(sending)} sends were in flight, {received} of them delivered"
        await self.start(service)
        return note

    async def restart_kafka(self) -> str:
        await asyncio.to_thread(self.broker.stop)
        await asyncio.sleep(DOWN_SECONDS)
        self.broker = await asyncio.to_thread(localkafka.start, self.kafka_dir)
        return ""

    async def restart_postgres(self) -> str:
        """Stops the server while the notifier has mails out that it has not recorded yet
        (if that moment comes within AIM_SECONDS): recording them must wait for the
        database, it must not send them again."""
        conn = await asyncpg.connect(self.database_url)
        loop = asyncio.get_running_loop()
        aim_until = loop.time() + AIM_SECONDS
        try:
            await conn.execute("SET lock_timeout = '20s'")
            while True:
                # Holding writes to the ledger, what is `sending` now is what the notifier
                # has in flight when the server goes: it can record nothing more before.
                await conn.execute("BEGIN")
                await conn.execute("LOCK TABLE nt_sends IN SHARE MODE")
                sending = await _sending(conn)
                if sending & self.inbox.taken() or loop.time() > aim_until:
                    break
                await conn.execute("ROLLBACK")
                await asyncio.sleep(0.005)
            self.stopped_in_flight |= sending
            await asyncio.to_thread(self.pg.stop)
        finally:
            conn.terminate()
        await asyncio.sleep(DOWN_SECONDS)
        await asyncio.to_thread(self.pg.start)
        received = len(sending & self.inbox.taken())
        return f"; {len(sending)} sends were in flight, {received} of them delivered"

    def stop(self) -> None:
        for process in self.procs.values():
            if process.poll() is None:
                process.terminate()
        for process in self.procs.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _sending(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT send_id FROM nt_sends WHERE status = 'sending'")
    return {row["send_id"] for row in rows}


Fault = tuple[float, str, Callable[[System], Awaitable[str]]]


def _kill(service: str) -> Callable[[System], Awaitable[str]]:
    return lambda system: system.kill_and_restart(service)


# seconds after the stream starts; each fault is over (everything ready again) before the next
FAULTS: list[Fault] = [
    (12, "SIGKILL ingest", _kill("ingest")),
    (30, "SIGKILL profile", _kill("profile")),
    (50, "restart the Kafka broker", System.restart_kafka),
    (75, "SIGKILL segmenter", _kill("segmenter")),
    (95, "SIGKILL journey", _kill("journey")),
    (115, "restart PostgreSQL", System.restart_postgres),
    (140, "SIGKILL notifier", _kill("notifier")),
]


async def inject_faults(system: System, faults: list[Fault]) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    for at, name, fault in faults:
        await asyncio.sleep(max(0.0, started + at - loop.time()))
        began = loop.time()
        note = await fault(system)
        system.timeline.append(
            f"{began - started:6.1f}s {name}: back after {loop.time() - began:.1f}s{note}"
        )


async def dead_lettered(bootstrap: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        parts = [TopicPartition(PREFIX + topics.DEAD_LETTER, p) for p in range(PARTITIONS)]
        return sum((await consumer.end_offsets(parts)).values())
    finally:
        await consumer.stop()


@dataclass
class Observed:
    """What the services hold once the stream is over, read from their tables."""

    event_ids: list[str]
    customers: dict[str, dict[str, Any]]  # user id → profile record row
    customer_of: dict[str, str]  # user id → canonical customer id
    profile_orders: dict[str, tuple[str, Decimal]]
    seg_orders: dict[str, tuple[str, Decimal]]
    rfm: dict[str, dict[str, Any]]  # customer id → seg_customers row
    runs: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    sends: list[dict[str, Any]]


async def observe(conn: asyncpg.Connection, workspace_id: str) -> Observed:
    ws = workspace_id
    users = await conn.fetch(
        "SELECT c.id, c.user_id, c.events_count, c.orders_count, c.revenue_total,"
        " (SELECT count(*) FROM profile_identifiers i WHERE i.workspace_id = c.workspace_id"
        "  AND i.customer_id = c.id AND i.kind = 'user_id') AS user_ids"
        " FROM profile_customers c WHERE c.workspace_id = $1",
        ws,
    )
    return Observed(
        event_ids=[
            r["event_id"]
            for r in await conn.fetch(
                "SELECT event_id FROM profile_events WHERE workspace_id = $1", ws
            )
        ],
        customers={r["user_id"]: dict(r) for r in users},
        customer_of={r["user_id"]: r["id"] for r in users},
        profile_orders={
            r["order_id"]: (r["customer_id"], r["amount"])
            for r in await conn.fetch(
                "SELECT order_id, customer_id, amount FROM profile_orders WHERE workspace_id = $1",
                ws,
            )
        },
        seg_orders={
            r["order_id"]: (r["customer_id"], r["amount"])
            for r in await conn.fetch(
                "SELECT order_id, customer_id, amount FROM seg_orders WHERE workspace_id = $1", ws
            )
        },
        rfm={
            r["customer_id"]: dict(r)
            for r in await conn.fetch("SELECT * FROM seg_customers WHERE workspace_id = $1", ws)
        },
        runs=[
            dict(r)
            for r in await conn.fetch(
                "SELECT run_id, customer_id, status FROM jr_runs"
                " WHERE workspace_id = $1 AND journey_id = $2",
                ws,
                JOURNEY,
            )
        ],
        steps=[
            dict(r)
            for r in await conn.fetch(
                "SELECT execution_id, run_id, customer_id, step_id, outcome FROM jr_steps"
                " WHERE workspace_id = $1 AND journey_id = $2",
                ws,
                JOURNEY,
            )
        ],
        sends=[
            dict(r)
            for r in await conn.fetch(
                "SELECT send_id, customer_id, status, message_id, recipient FROM nt_sends"
                " WHERE workspace_id = $1",
                ws,
            )
        ],
    )


async def drained(conn: asyncpg.Connection, ws: str, stream: Stream, inbox: Inbox) -> bool:
    stored = await conn.fetchval("SELECT count(*) FROM profile_events WHERE workspace_id = $1", ws)
    scored = await conn.fetchval(
        "SELECT coalesce(sum(lifetime_orders), 0) FROM seg_customers WHERE workspace_id = $1", ws
    )
    settled = await conn.fetchval(
        "SELECT count(*) FROM nt_sends WHERE workspace_id = $1 AND status <> 'sending'", ws
    )
    mailed = len({m["Message-ID"] for m in inbox.received()})
    return bool(
        stored >= len(stream.calls)
        and scored >= len(stream.orders)
        and settled >= len(stream.buyers)
        and mailed >= len(stream.buyers)
    )


async def wait_drained(database_url: str, ws: str, stream: Stream, inbox: Inbox) -> float:
    """Seconds until everything expected has arrived (or the timeout: the checks then say
    what is missing), then a few more for anything extra that would follow."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    conn = await asyncpg.connect(database_url)
    try:
        while loop.time() - started < DRAIN_TIMEOUT:
            if await drained(conn, ws, stream, inbox):
                break
            await asyncio.sleep(1.0)
    finally:
        await conn.close()
    took = loop.time() - started
    await asyncio.sleep(SETTLE_SECONDS)
    return took


class SlowInbox(Inbox):
    """Takes a moment per message, as real mail servers do, and keeps the send ids of what
    it has taken."""

    def __init__(self) -> None:
        super().__init__()
        self.send_ids: set[str] = set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(SMTP_SECONDS)
        answer = await super().handle_DATA(server, session, envelope)
        send_id = str(email.message_from_bytes(envelope.content)["X-Kizuna-Send-Id"])
        with self.lock:
            self.send_ids.add(send_id)
        return answer

    def taken(self) -> set[str]:
        with self.lock:
            return set(self.send_ids)


@pytest.fixture
def slow_smtp() -> Iterator[tuple[SlowInbox, int]]:
    inbox = SlowInbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@contextlib.asynccontextmanager
async def platform(
    data_dir: Path, smtp: tuple[SlowInbox, int]
) -> AsyncIterator[tuple[System, str, str, str]]:
    """Its own PostgreSQL and Kafka broker (so that restarting them disturbs no other test)
    and the five services as processes. Yields the system, the workspace id, its write key
    and its admin key."""
    pg = EmbeddedPostgres(
        data_dir / "pg",
        free_port(),
        {"max_connections": "300", "fsync": "off", "full_page_writes": "off"},
    )
    broker: localkafka.LocalKafka | None = None
    system: System | None = None
    try:
        await asyncio.to_thread(pg.start)
        await ensure_database(pg.url, "kizuna")
        database_url = pg.database_url("kizuna")
        await migrate.upgrade_async(database_url)
        engine = create_engine(database_url, pool_size=1)
        workspace_id, write, admin = await make_workspace(engine, "faults")
        await engine.dispose()
        broker = await asyncio.to_thread(localkafka.start, data_dir / "kafka")
        ports = {service: free_port() for service in SERVICES}
        env = {
            "KIZUNA_DATABASE_URL": database_url,
            "KIZUNA_BUS_URL": f"kafka://{broker.bootstrap}",
            "KIZUNA_TOPIC_PREFIX": PREFIX,
            "KIZUNA_BUS_PARTITIONS": str(PARTITIONS),
            "KIZUNA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
            "KIZUNA_BUS_PUBLISH_TIMEOUT_MS": "5000",
            "KIZUNA_SECRET_KEY": "faults-secret-" + "f" * 40,
            "KIZUNA_LOG_LEVEL": "WARNING",
            "KIZUNA_LOG_FORMAT": "console",
            "KIZUNA_NOTIFIER_SMTP_URL": f"smtp://127.0.0.1:{smtp[1]}",
            "KIZUNA_NOTIFIER_FROM": "Tea Shop <news@tea.example>",
            "KIZUNA_NOTIFIER_EMAIL_PER_SECOND": "5000",
            "KIZUNA_NOTIFIER_TRACKING_URL": f"http://127.0.0.1:{ports['ingest']}",
            "KIZUNA_NOTIFIER_PUBLIC_URL": f"http://127.0.0.1:{ports['notifier']}",
            "KIZUNA_NOTIFIER_PROFILE_URL": f"http://127.0.0.1:{ports['profile']}",
            "KIZUNA_JOURNEY_NOTIFIER_URL": f"http://127.0.0.1:{ports['notifier']}",
            "KIZUNA_JOURNEY_PROFILE_URL": f"http://127.0.0.1:{ports['profile']}",
        }
        system = System(env, ports, smtp[0], database_url, pg, data_dir / "kafka", broker)
        await asyncio.gather(*(system.start(service) for service in SERVICES))
        yield system, workspace_id, write.secret, admin.secret
    finally:
        if system is not None:
            await asyncio.to_thread(system.stop)
            broker = system.broker
        if broker is not None:
            await asyncio.to_thread(broker.stop)
        await asyncio.to_thread(pg.stop)


async def first_order_journey(system: System, admin_key: str) -> None:
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {admin_key}"}, timeout=30
    ) as client:
        saved = await client.put(
            f"{system.url('notifier')}/v1/templates/thanks",
            json={
                "channel": "email",
                "subject": "Thank you for your first order",
                "text": "Order {{ data.properties.order_id }}",
            },
        )
        assert saved.status_code == 200, saved.text
        created = await client.post(
            f"{system.url('journey')}/v1/journeys",
            json={
                "id": JOURNEY,
                "name": "Thanks for the first order",
                "trigger": {"type": "event", "event": "Order Completed"},
                "entry": {"policy": "once"},
                "start": "thanks",
                "steps": {
                    "thanks": {
                        "type": "send",
                        "channel": "email",
                        "template": "thanks",
                        "category": "transactional",
                    }
                },
            },
        )
        assert created.status_code == 201, created.text
        activated = await client.post(f"{system.url('journey')}/v1/journeys/{JOURNEY}/activate")
        assert activated.status_code == 200, activated.text


async def rfm_from_api(
    system: System, admin_key: str, customers: list[str]
) -> dict[str, dict[str, Any] | None]:
    found: dict[str, dict[str, Any] | None] = {}
    async with httpx.AsyncClient(
        base_url=system.url("segmenter"), headers={"Authorization": f"Bearer {admin_key}"}
    ) as client:
        for customer in customers:
            answer = await client.get(f"/v1/rfm/customers/{customer}")
            found[customer] = answer.json()["facts"] if answer.status_code == 200 else None
    return found


@pytest.mark.timeout(600)
async def test_nothing_lost_or_sent_twice_through_crashes_and_restarts(
    tmp_path: Path, slow_smtp: tuple[SlowInbox, int]
) -> None:
    inbox = slow_smtp[0]
    began = time.monotonic()
    stream = plan_stream()
    assert len(stream.calls) == EVENTS
    async with platform(tmp_path, slow_smtp) as (system, workspace_id, write_key, admin_key):
        await first_order_journey(system, admin_key)
        ready_after = time.monotonic() - began

        sender = Sender(system.url("ingest"), write_key)
        stream_began = time.monotonic()
        lanes = [asyncio.create_task(sender.lane(i)) for i in range(LANES)]
        await asyncio.gather(
            sender.release(stream.calls, RATE),
            inject_faults(system, FAULTS),
            sender.progress(lanes),
            *lanes,
        )
        stream_took = time.monotonic() - stream_began
        drain_took = await wait_drained(system.database_url, workspace_id, stream, inbox)

        conn = await asyncpg.connect(system.database_url)
        try:
            seen = await observe(conn, workspace_id)
        finally:
            await conn.close()
        sample = sorted(stream.buyers)[:: len(stream.buyers) // 20]
        api_rfm = await rfm_from_api(
            system, admin_key, [seen.customer_of.get(user, user) for user in sample]
        )
        dead = await dead_lettered(system.broker.bootstrap)
    mails = inbox.received()

    print(
        f"\nfaults: {EVENTS} events from {CUSTOMERS} customers at {RATE}/s;"
        f" ready after {ready_after:.1f}s, stream {stream_took:.1f}s, drained in"
        f" {drain_took:.1f}s, total {time.monotonic() - began:.1f}s",
        *system.timeline,
        f"ingest answers: {dict(sender.answers)}; mails received {len(mails)}"
        f" ({len(mails) - len(stream.buyers)} copies)",
        sep="\n  ",
    )
    check(workspace_id, stream, sender, seen, api_rfm, mails, system.killed_in_flight, dead)
    for data in ("kafka", "pg"):
        shutil.rmtree(tmp_path / data, ignore_errors=True)


def check(
    workspace_id: str,
    stream: Stream,
    sender: Sender,
    seen: Observed,
    api_rfm: dict[str, dict[str, Any] | None],
    mails: list[EmailMessage],
    killed_in_flight: set[str],
    dead: int,
) -> None:
    sent_ids = {call["messageId"] for call in stream.calls}
    assert sender.rejected == []
    assert sender.given_up == [], "every batch was answered 200 in the end"
    assert sender.accepted == sent_ids

    # profile: each accepted event stored once, each customer one record counting its own
    stored = Counter(seen.event_ids)
    assert set(stored) - sent_ids == set(), "nothing stored that was not sent"
    assert sent_ids - set(stored) == set(), "every accepted event is stored"
    assert max(stored.values()) == 1
    assert set(seen.customers) == set(stream.emails), "one record per customer"
    assert {c["user_ids"] for c in seen.customers.values()} == {1}
    calls_of = Counter(call["userId"] for call in stream.calls)
    orders_of: dict[str, list[Decimal]] = {}
    for user, total in stream.orders.values():
        orders_of.setdefault(user, []).append(total)
    miscounted = {
        user: (c["events_count"], c["orders_count"], c["revenue_total"])
        for user, c in seen.customers.items()
        if (c["events_count"], c["orders_count"], c["revenue_total"])
        != (calls_of[user], len(orders_of.get(user, [])), sum(orders_of.get(user, []), Decimal(0)))
    }
    assert miscounted == {}, "profile counts each event and order once"
    expected_orders = {
        order: (seen.customer_of[user], total) for order, (user, total) in stream.orders.items()
    }
    assert seen.profile_orders == expected_orders

    # segmenter: the order ledger and the RFM facts equal a recomputation from what was sent
    assert seen.seg_orders == expected_orders
    expected_rfm = {
        seen.customer_of[user]: (len(totals), sum(totals, Decimal(0)))
        for user, totals in orders_of.items()
    }
    facts = {
        customer: (row["frequency"], row["monetary"])
        for customer, row in seen.rfm.items()
        if row["lifetime_orders"] or row["frequency"]
    }
    lifetime = {
        customer: (row["lifetime_orders"], row["lifetime_revenue"])
        for customer, row in seen.rfm.items()
        if row["lifetime_orders"] or row["frequency"]
    }
    assert facts == expected_rfm, "frequency and monetary"
    assert lifetime == expected_rfm, "lifetime orders and revenue"
    assert all(seen.rfm[c]["recency_score"] is not None for c in expected_rfm), "all scored"
    for customer, answer in api_rfm.items():
        count, total = expected_rfm[customer]
        assert answer is not None, customer
        assert (answer["frequency"], answer["monetary"]) == (count, float(total))

    # journey: one run per buyer, entered on the first order, its send step executed once
    buyers = {seen.customer_of[user]: user for user in stream.buyers}
    runs_of = Counter(run["customer_id"] for run in seen.runs)
    assert set(runs_of) == set(buyers), "a run for every buyer and nobody else"
    assert max(runs_of.values()) == 1
    expected_runs = {
        customer: run_id_for(workspace_id, JOURNEY, customer, f"event:{first}")
        for customer, first in ((seen.customer_of[u], m) for u, m in stream.first_order.items())
    }
    assert {r["customer_id"]: r["run_id"] for r in seen.runs} == expected_runs, "first order"
    assert {r["status"] for r in seen.runs} == {"completed"}
    executed = Counter(
        (step["run_id"], step["step_id"]) for step in seen.steps if step["step_id"] == "thanks"
    )
    assert set(executed) == {(run, "thanks") for run in expected_runs.values()}
    assert max(executed.values()) == 1, "each send step executed once"
    assert {s["outcome"] for s in seen.steps if s["step_id"] == "thanks"} == {"sent"}

    # notifier: one send per buyer, sent; the SMTP server got one message per buyer
    sends_of = Counter(send["customer_id"] for send in seen.sends)
    assert set(sends_of) == set(buyers)
    assert max(sends_of.values()) == 1
    assert {send["status"] for send in seen.sends} == {"sent"}
    send_ids = {f"send:{run}:thanks:1" for run in expected_runs.values()}
    assert {send["send_id"] for send in seen.sends} == send_ids
    assert {str(mail["X-Kizuna-Send-Id"]) for mail in mails} == send_ids
    message_ids: dict[str, set[str]] = defaultdict(set)
    for mail in mails:
        message_ids[str(mail["To"])].add(str(mail["Message-ID"]))
    expected_to = {stream.emails[user] for user in stream.buyers}
    assert set(message_ids) == expected_to, "a mail to every buyer and to nobody else"
    assert {len(ids) for ids in message_ids.values()} == {1}, "one message per customer"
    copies = Counter(str(mail["Message-ID"]) for mail in mails)
    send_of = {str(mail["Message-ID"]): str(mail["X-Kizuna-Send-Id"]) for mail in mails}
    twice = {send_of[m]: n for m, n in copies.items() if n > 1}
    assert set(twice) <= killed_in_flight, "a copy only of a mail in flight when it was killed"
    assert set(twice.values()) <= {2}
    assert dead == 0, "nothing dead-lettered"
