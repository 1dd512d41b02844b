"""Integration webhook deliveries/s against a local receiver, next to a bare httpx loop and a
bare aiohttp loop; memory with 10,000 and 50,000 pending retries.

Run with ``.venv/bin/python bench/bench_webhooks.py [--messages N] [--rounds R]`` (default
10,000 messages, 3 rounds). Starts an embedded PostgreSQL (schema applied with
``kizuna.migrate``) in a temporary directory and a receiver in a child process of its own
(uvicorn, httptools, a minimal ASGI app on a free loopback port): ``/hook/ok`` verifies each
delivery's Standard Webhooks signature with the ``standardwebhooks`` library and answers 200
(401 when it does not verify), ``/hook/fail`` answers 500 with ``Retry-After: 3600``; both
count what they answered, ``/hook/ok`` also the distinct ``webhook-id`` values; ``/count``
returns the counts and ``/reset`` clears them. Then, in the same run, against the same
receiver and over ``notifier_webhook_connections`` (100; ``--connections``) connections:

(a) notifier: the real ``Dispatcher`` (``NotifierSettings`` on the embedded PostgreSQL,
    ``notifier_webhook_allowed_networks="127.0.0.0/8"``, a ``WebhookPoster`` built as
    ``kizuna_notifier.main`` builds it), one endpoint made with
    ``integration_store.create_endpoint`` subscribed to ``order.completed``. N ``Order
    Completed`` track envelopes (as the tests build them) are recorded with
    ``Dispatcher.record`` in batches of ``consumer_batch_size`` (timed apart: record
    events/s), then ``Dispatcher.drain()``, what the service's loop runs, until a claim finds
    nothing due: rounds claimed under the lease, signed, posted and settled, two in flight
    (one posting while the one before settles). Timed: the draining only.
(b) httpx baseline: a bare ``httpx.AsyncClient`` (the limits, timeout and no redirects the
    poster had with httpx) and as many workers as connections posting the same N bodies with
    the same headers, signed beforehand with ``standardwebhooks`` outside the timing.
(b2) aiohttp baseline: the same with a bare ``aiohttp.ClientSession`` (``TCPConnector(limit=
    connections)``, no redirects, the body read): the client the poster uses.
(c) raw client, informational: the same signed requests serialised beforehand and written by a
    minimal HTTP/1.1 keep-alive client on asyncio streams, connected before the timing: what
    the receiver and the loopback take, i.e. how much of (b) and (b2) is the client.

A warm-up round of each (2,000) comes first, not counted; the rounds then alternate the order
of the cases; each figure is the median of the rounds; the ratios are the notifier's to each
baseline. Checked in every notifier round:
``record`` made N deliveries, ``drain`` took N, every delivery is ``succeeded`` after
one attempt in PostgreSQL, the attempt log holds N answers 200, the receiver verified N
deliveries with N distinct ids and refused none; in every baseline and raw round: N answers
200, N verified with N distinct ids. A failed check fails the run (exit status 1, the JSON
line lists it under ``errors``).

Memory, afterwards, on a second workspace whose only endpoint is ``/hook/fail``: 10,000
(``--pending``) messages recorded and dispatched, each failing once: pending retries, due an
hour later; then a notifier round of N deliveries to ``/hook/ok`` while they are pending.
Then 40,000 more (``--more-pending``) written in SQL in the same state (50,000 pending
retries) and two more notifier rounds. The process's resident set size (``/proc/self/statm``,
after ``gc.collect()``) is taken after each step: the issue asks that it stays flat, the
retries living in PostgreSQL. Also reported: one idle ``dispatch_due`` (nothing due) with
50,000 pending, and whether ``sniffio`` is importable (httpcore imports it on every pool
operation; when it is absent each of those is a failed import).

``--profile`` runs one more notifier round under cProfile (this process only, not the
receiver's) and prints the top functions. Prints a summary and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib.util
import io
import itertools
import json
import multiprocessing
import os
import platform
import pstats
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import sqlalchemy as sa
import uvicorn
import uvloop
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from kizuna import auth, migrate
from kizuna.db import create_engine
from kizuna.embedded_pg import EmbeddedPostgres, ensure_database, free_port
from kizuna.envelope import Envelope, utcnow
from kizuna_notifier.adapters import integration_store as store
from kizuna_notifier.adapters.webhooks import WebhookPoster, parse_networks
from kizuna_notifier.domain import endpoints, integrations
from kizuna_notifier.integrations import Dispatcher
from kizuna_notifier.settings import NotifierSettings

TARGET_DELIVERIES_S = 2000
FLAT_MIB = 16.0  # 40,000 retries held in memory would take far more (a body alone is ~300 B)
WS = "ws_bench_hooks"
WS_RETRY = "ws_bench_retry"
ENDPOINT = "ep_bench_ok"
ENDPOINT_RETRY = "ep_bench_fail"
SECRET = endpoints.new_secret()
TIMEOUT_SECONDS = 600.0
PAGE = os.sysconf("SC_PAGE_SIZE")
RETRY_AFTER = "3600"  # /hook/fail's answer: each failed delivery is pending an hour ahead

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


# --- the receiver, in a process of its own ----------------------------------------------------


def receiver_app(secret: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    verifier = Webhook(secret)
    counts: Counter[str] = Counter()
    ids: set[str] = set()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        path = scope["path"]
        status, body, extra = 200, b"ok", []
        if path == "/hook/ok":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            try:
                verifier.verify(b"".join(chunks), headers, json_parse=False)
            except WebhookVerificationError:
                counts["unverified"] += 1
                status, body = 401, b"signature"
            else:
                counts["ok"] += 1
                ids.add(headers["webhook-id"])
        elif path == "/hook/fail":
            counts["failed"] += 1
            status, body = 500, b"down for maintenance"
            extra = [(b"retry-after", RETRY_AFTER.encode())]
        elif path == "/count":
            body = json.dumps({**counts, "distinct": len(ids)}).encode()
        elif path == "/reset":
            counts.clear()
            ids.clear()
        else:
            status, body = 404, b"no such path"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"content-length", str(len(body)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def serve_receiver(port: int, secret: str) -> None:
    uvicorn.run(
        receiver_app(secret),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=4096,
        timeout_keep_alive=120,
    )


class Receiver:
    def __init__(self, port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        context = multiprocessing.get_context("spawn")
        self.process = context.Process(target=serve_receiver, args=(port, SECRET), daemon=True)

    def start(self) -> None:
        self.process.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.base}/count", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or not self.process.is_alive():
                    raise RuntimeError("the receiver did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)

    async def counts(self) -> dict[str, int]:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"{self.base}/count")
        response.raise_for_status()
        found: dict[str, int] = response.json()
        return {key: found.get(key, 0) for key in ("ok", "failed", "unverified", "distinct")}

    async def reset(self) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            (await client.post(f"{self.base}/reset")).raise_for_status()


# --- measuring ------------------------------------------------------------------------------


class SqlTimer:
    """Wall time inside statement executions (round trip and driver), by statement."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.enabled = False
        sync = engine.sync_engine
        event.listen(sync, "before_cursor_execute", self._before)
        event.listen(sync, "after_cursor_execute", self._after)

    @staticmethod
    def label(statement: str) -> str:
        for needle, name in (
            ("WITH due AS", "claim due (lease)"),
            ("INSERT INTO nt_webhook_attempts", "attempt log"),
            ("UPDATE nt_webhook_deliveries d SET status", "settle deliveries"),
            ("UPDATE nt_endpoints SET", "endpoint health"),
            ("SELECT id, workspace_id, url FROM nt_endpoints", "failing too long"),
        ):
            if needle in statement:
                return name
        return " ".join(statement.split())[:50]

    def _before(self, conn: Any, *_: Any) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def _after(self, conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        elapsed = time.perf_counter() - conn.info.pop("bench_started", time.perf_counter())
        if self.enabled:
            self.seconds[self.label(statement)] += elapsed

    def take(self) -> dict[str, float]:
        taken = dict(self.seconds)
        self.seconds.clear()
        return taken


def cpu_seconds() -> float:
    """CPU time of this process (the receiver's is its own)."""
    times = os.times()
    return times.user + times.system


def rss_mib() -> float:
    """The resident set size now, after a full collection."""
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def orders(workspace_id: str, label: str, count: int, at: datetime) -> list[Envelope]:
    """``Order Completed`` track events as ``resolved-events`` carries them (as in the tests)."""
    envelopes = []
    for i in range(count):
        customer = f"c{i % 5000}"
        order_id = f"{label}-{i}"
        envelopes.append(
            Envelope.new(
                "track",
                workspace_id,
                customer,
                {
                    "type": "track",
                    "event": "Order Completed",
                    "customerId": customer,
                    "properties": {
                        "order_id": order_id,
                        "total": 3200 + i % 977,
                        "currency": "JPY",
                        "products": [{"sku": f"tea-{i % 40}", "quantity": 1 + i % 3}],
                    },
                },
                occurred_at=at,
                event_id=f"ev-{order_id}",
            )
        )
    return envelopes


def signed(messages: Sequence[integrations.Message]) -> list[tuple[bytes, dict[str, str]]]:
    """The bodies and headers the notifier would send, signed now with standardwebhooks."""
    signer = Webhook(SECRET)
    now = datetime.now(UTC)
    stamp = str(int(now.timestamp()))
    return [
        (
            m.body.encode(),
            {
                "content-type": "application/json",
                "webhook-id": m.id,
                "webhook-timestamp": stamp,
                "webhook-signature": signer.sign(m.id, now, m.body),
                "user-agent": "Kizuna-Webhooks/1",
            },
        )
        for m in messages
    ]


@dataclass
class Bench:
    settings: NotifierSettings
    engine: AsyncEngine
    dispatcher: Dispatcher
    receiver: Receiver
    sql: SqlTimer
    baseline_client: httpx.AsyncClient
    aiohttp_client: aiohttp.ClientSession
    labels: Iterator[int] = field(default_factory=itertools.count)

    def label(self, prefix: str) -> str:
        return f"{prefix}{next(self.labels)}"

    async def record(self, envelopes: Sequence[Envelope]) -> tuple[float, int]:
        batch = self.settings.consumer_batch_size
        started = time.perf_counter()
        made = 0
        for start in range(0, len(envelopes), batch):
            made += await self.dispatcher.record(envelopes[start : start + batch])
        return time.perf_counter() - started, made

    async def drain(self) -> tuple[float, int, int]:
        """Dispatcher.drain(): (seconds, deliveries tried, rounds of a batch each)."""
        started = time.perf_counter()
        async with asyncio.timeout(TIMEOUT_SECONDS):
            tried = await self.dispatcher.drain()
        rounds = -(-tried // self.settings.notifier_webhook_batch_size)
        return time.perf_counter() - started, tried, rounds

    async def notifier_round(
        self, envelopes: Sequence[Envelope], profile: bool = False
    ) -> dict[str, Any]:
        label = f"notifier round {envelopes[0].id}"
        n = len(envelopes)
        ids = [m.id for e in envelopes if (m := integrations.message_for(e)) is not None]
        await self.receiver.reset()
        record_seconds, made = await self.record(envelopes)
        profiler = cProfile.Profile() if profile else None
        self.sql.take()
        self.sql.enabled = True
        cpu = cpu_seconds()
        if profiler is not None:
            profiler.enable()
        seconds, tried, rounds = await self.drain()
        if profiler is not None:
            profiler.disable()
        cpu = cpu_seconds() - cpu
        self.sql.enabled = False
        sql = self.sql.take()
        errors = []
        if made != n:
            errors.append(f"{label}: record made {made} deliveries, expected {n}")
        if tried != n:
            errors.append(f"{label}: drain took {tried}, expected {n}")
        async with self.engine.connect() as conn:
            states = (
                await conn.execute(
                    sa.text(
                        "SELECT status, attempts, count(*) FROM nt_webhook_deliveries"
                        " WHERE endpoint_id = :ep AND message_id = ANY(CAST(:ids AS text[]))"
                        " GROUP BY status, attempts"
                    ),
                    {"ep": ENDPOINT, "ids": ids},
                )
            ).all()
            logged = await conn.scalar(
                sa.text(
                    "SELECT count(*) FROM nt_webhook_attempts WHERE endpoint_id = :ep"
                    " AND message_id = ANY(CAST(:ids AS text[])) AND status_code = 200"
                ),
                {"ep": ENDPOINT, "ids": ids},
            )
        by_state = {f"{s}/{a}": c for s, a, c in states}
        if by_state != {"succeeded/1": n}:
            errors.append(f"{label}: deliveries (status/attempts) {by_state}, expected all")
        if logged != n:
            errors.append(f"{label}: {logged} attempts answered 200 logged, expected {n}")
        errors += arrival_errors(label, await self.receiver.counts(), n)
        figures: dict[str, Any] = {
            "deliveries_s": n / seconds,
            "seconds": seconds,
            "dispatch_rounds": rounds,
            "record_events_s": n / record_seconds,
            "record_seconds": record_seconds,
            "cpu_ms_per_delivery": cpu / n * 1000,
            "sql_seconds": sql,
            "errors": errors,
        }
        if profiler is not None:
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(30)
            stats.sort_stats("cumulative").print_stats(45)
            stats.sort_stats("cumulative").print_stats("kizuna_notifier|standardwebhooks", 25)
            figures["profile"] = out.getvalue()
        return figures

    async def baseline_round(self, messages: Sequence[integrations.Message]) -> dict[str, Any]:
        label = f"baseline round {messages[0].id}"
        n = len(messages)
        prepared = signed(messages)
        url = f"{self.receiver.base}/hook/ok"
        statuses: Counter[int] = Counter()
        order = iter(prepared)  # shared by the workers: each body goes out once
        client = self.baseline_client

        async def worker() -> None:
            for body, headers in order:
                response = await client.post(url, content=body, headers=headers)
                statuses[response.status_code] += 1

        await self.receiver.reset()
        cpu = cpu_seconds()
        started = time.perf_counter()
        async with asyncio.timeout(TIMEOUT_SECONDS):
            await asyncio.gather(
                *(worker() for _ in range(self.settings.notifier_webhook_connections))
            )
        seconds = time.perf_counter() - started
        cpu = cpu_seconds() - cpu
        errors = []
        if dict(statuses) != {200: n}:
            errors.append(f"{label}: answers {dict(statuses)}, expected {n} answers 200")
        errors += arrival_errors(label, await self.receiver.counts(), n)
        return {
            "deliveries_s": n / seconds,
            "seconds": seconds,
            "cpu_ms_per_delivery": cpu / n * 1000,
            "errors": errors,
        }

    async def aiohttp_round(self, messages: Sequence[integrations.Message]) -> dict[str, Any]:
        label = f"aiohttp round {messages[0].id}"
        n = len(messages)
        prepared = signed(messages)
        url = f"{self.receiver.base}/hook/ok"
        statuses: Counter[int] = Counter()
        order = iter(prepared)
        client = self.aiohttp_client

        async def worker() -> None:
            for body, headers in order:
                async with client.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    await response.read()
                    statuses[response.status] += 1

        await self.receiver.reset()
        cpu = cpu_seconds()
        started = time.perf_counter()
        async with asyncio.timeout(TIMEOUT_SECONDS):
            await asyncio.gather(
                *(worker() for _ in range(self.settings.notifier_webhook_connections))
            )
        seconds = time.perf_counter() - started
        cpu = cpu_seconds() - cpu
        errors = []
        if dict(statuses) != {200: n}:
            errors.append(f"{label}: answers {dict(statuses)}, expected {n} answers 200")
        errors += arrival_errors(label, await self.receiver.counts(), n)
        return {
            "deliveries_s": n / seconds,
            "seconds": seconds,
            "cpu_ms_per_delivery": cpu / n * 1000,
            "errors": errors,
        }

    async def raw_round(self, messages: Sequence[integrations.Message]) -> dict[str, Any]:
        """Informational ceiling: the same signed requests, serialised beforehand, written by a
        minimal HTTP/1.1 keep-alive client on asyncio streams over as many connections, each
        connected before the timing."""
        label = f"raw round {messages[0].id}"
        n = len(messages)
        host = f"127.0.0.1:{self.receiver.port}".encode()
        requests = []
        for body, headers in signed(messages):
            head = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
            requests.append(
                b"POST /hook/ok HTTP/1.1\r\nhost: "
                + host
                + b"\r\n"
                + head
                + b"content-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
        statuses: Counter[int] = Counter()
        order = iter(requests)
        streams = [
            await asyncio.open_connection("127.0.0.1", self.receiver.port)
            for _ in range(self.settings.notifier_webhook_connections)
        ]

        async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for request in order:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                _, _, rest = head.lower().partition(b"content-length:")
                await reader.readexactly(int(rest.split(b"\r\n", 1)[0]))
                statuses[int(head[9:12])] += 1

        await self.receiver.reset()
        cpu = cpu_seconds()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                await asyncio.gather(*(worker(r, w) for r, w in streams))
            seconds = time.perf_counter() - started
            cpu = cpu_seconds() - cpu
        finally:
            for _, writer in streams:
                writer.close()
        errors = []
        if dict(statuses) != {200: n}:
            errors.append(f"{label}: answers {dict(statuses)}, expected {n} answers 200")
        errors += arrival_errors(label, await self.receiver.counts(), n)
        return {
            "deliveries_s": n / seconds,
            "seconds": seconds,
            "cpu_ms_per_delivery": cpu / n * 1000,
            "errors": errors,
        }

    async def fail_once(self, envelopes: Sequence[Envelope]) -> dict[str, Any]:
        """Records these for the failing endpoint and dispatches until nothing is due: each
        delivery fails once (500, ``Retry-After: 3600``) and is pending, an hour ahead."""
        await self.receiver.reset()
        started = time.perf_counter()
        _, made = await self.record(envelopes)
        _, tried, _ = await self.drain()
        seconds = time.perf_counter() - started
        n = len(envelopes)
        counts = await self.receiver.counts()
        errors = []
        if made != n or tried != n or counts["failed"] != n:
            errors.append(
                f"failing phase: {made} deliveries made, {tried} tried, {counts['failed']}"
                f" answered 500; expected {n} each"
            )
        return {"made": made, "tried": tried, "seconds": seconds, "errors": errors}

    async def park_retries(self, count: int) -> dict[str, Any]:
        """The same state written in SQL (nothing of it passes through this process): kept
        ``order.completed`` messages shaped like the recorded ones, and their deliveries
        pending after one failed attempt (500), the next attempt 1 to 1.5 h ahead."""
        started = time.perf_counter()
        params = {"ws": WS_RETRY, "ep": ENDPOINT_RETRY, "n": count, "at": utcnow()}
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO nt_webhook_messages (workspace_id, id, type, customer_id, body,"
                    " occurred_at) SELECT :ws, 'msg_' || md5('parked' || g), 'order.completed',"
                    " 'c' || g % 5000, json_build_object('type', 'order.completed',"
                    " 'timestamp', CAST(:at AS timestamptz), 'data', json_build_object("
                    "'customer_id', 'c' || g % 5000, 'event_id', 'ev-parked-' || g,"
                    " 'event', 'Order Completed', 'properties', json_build_object("
                    "'order_id', 'parked-' || g, 'total', 3200 + g % 977, 'currency', 'JPY',"
                    " 'products', json_build_array(json_build_object('sku', 'tea-' || g % 40,"
                    " 'quantity', 1 + g % 3)))))::text, :at FROM generate_series(1, :n) g"
                ),
                params,
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO nt_webhook_deliveries (workspace_id, endpoint_id, message_id,"
                    " status, attempts, next_attempt_at, last_status) SELECT :ws, :ep,"
                    " 'msg_' || md5('parked' || g), 'pending', 1, CAST(:at AS timestamptz)"
                    " + interval '1 hour' + make_interval(secs => random() * 1800), 500"
                    " FROM generate_series(1, :n) g"
                ),
                params,
            )
        async with self.engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("nt_webhook_messages", "nt_webhook_deliveries"):
                await auto.execute(sa.text(f"ANALYZE {table}"))
        seconds = time.perf_counter() - started
        return {"made": count, "tried": 0, "seconds": seconds, "errors": []}

    async def idle_dispatch_ms(self) -> float:
        """One dispatch_due() that finds nothing due, median of 20."""
        times = []
        for _ in range(20):
            started = time.perf_counter()
            found = await self.dispatcher.dispatch_due()
            times.append(time.perf_counter() - started)
            if found:
                raise RuntimeError(f"an idle dispatch_due found {found} due")
        return statistics.median(times) * 1000

    async def retry_state(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.text(
                        "SELECT count(*) FILTER (WHERE status = 'pending'),"
                        " count(*) FILTER (WHERE status = 'pending' AND next_attempt_at > now()),"
                        " count(*) FILTER (WHERE attempts = 1), count(*)"
                        " FROM nt_webhook_deliveries WHERE endpoint_id = :ep"
                    ),
                    {"ep": ENDPOINT_RETRY},
                )
            ).one()
        return {
            "pending": row[0],
            "pending_future": row[1],
            "attempted_once": row[2],
            "all": row[3],
        }


def arrival_errors(label: str, counts: dict[str, int], n: int) -> list[str]:
    want = {"ok": n, "failed": 0, "unverified": 0, "distinct": n}
    if counts == want:
        return []
    return [f"{label}: the receiver counted {counts}, expected {want}"]


# --- the run --------------------------------------------------------------------------------


def notifier_settings(url: str, connections: int | None) -> NotifierSettings:
    extra: dict[str, Any] = {}
    if connections is not None:
        extra["notifier_webhook_connections"] = connections
    return NotifierSettings(
        database_url=url,
        bus_url="postgres",
        log_level="WARNING",
        log_format="console",
        secret_key="b" * 40,
        notifier_webhook_allowed_networks="127.0.0.0/8",
        **extra,
    )


async def create_endpoints(engine: AsyncEngine, base: str) -> None:
    async with engine.begin() as conn:
        for ws, endpoint_id, path in ((WS, ENDPOINT, "ok"), (WS_RETRY, ENDPOINT_RETRY, "fail")):
            await auth.create_workspace(conn, ws, ws)
            await store.create_endpoint(
                conn,
                {
                    "id": endpoint_id,
                    "ws": ws,
                    "url": f"{base}/hook/{path}",
                    "description": f"bench {path}",
                    "event_types": ["order.completed"],
                    "enabled": True,
                    "secrets": [{"secret": SECRET, "expires_at": None}],
                },
            )


def median_of(rounds: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rounds))


@dataclass(frozen=True)
class Options:
    messages: int
    rounds: int
    pending: int
    more_pending: int
    connections: int | None
    profile: bool


async def measure(url: str, receiver: Receiver, options: Options) -> dict[str, Any]:
    n, pending, more = options.messages, options.pending, options.more_pending
    settings = notifier_settings(url, options.connections)
    engine = create_engine(url)
    poster = WebhookPoster(
        parse_networks(settings.notifier_webhook_allowed_networks),
        connections=settings.notifier_webhook_connections,
    )
    dispatcher = Dispatcher(engine, poster, settings)
    connections = settings.notifier_webhook_connections
    baseline_client = httpx.AsyncClient(
        timeout=10,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )
    aiohttp_client = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=10),
    )
    memory: dict[str, float] = {"start": rss_mib()}
    cases: dict[str, list[dict[str, Any]]] = {
        "notifier": [],
        "baseline": [],
        "aiohttp": [],
        "raw": [],
    }
    loaded: list[dict[str, Any]] = []
    errors: list[str] = []
    profile_text = None
    try:
        await create_endpoints(engine, receiver.base)
        bench = Bench(
            settings,
            engine,
            dispatcher,
            receiver,
            SqlTimer(engine),
            baseline_client,
            aiohttp_client,
        )
        at = utcnow()

        def batch(ws: str, count: int) -> list[Envelope]:
            return orders(ws, bench.label("o"), count, at)

        def bodies(envelopes: Sequence[Envelope]) -> list[integrations.Message]:
            return [m for e in envelopes if (m := integrations.message_for(e)) is not None]

        warm = batch(WS, min(n, 2000))
        warmups = [
            await bench.notifier_round(warm),
            await bench.baseline_round(bodies(warm)),
            await bench.aiohttp_round(bodies(warm)),
            await bench.raw_round(bodies(warm)),
        ]
        errors += [e for r in warmups for e in r["errors"]]
        async with engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("nt_webhook_messages", "nt_webhook_deliveries", "nt_webhook_attempts"):
                await auto.execute(sa.text(f"VACUUM ANALYZE {table}"))
        for i in range(options.rounds):
            envelopes = batch(WS, n)
            order = ["notifier", "baseline", "aiohttp", "raw"]
            for case in order if i % 2 == 0 else order[::-1]:
                if case == "notifier":
                    cases[case].append(await bench.notifier_round(envelopes))
                elif case == "baseline":
                    cases[case].append(await bench.baseline_round(bodies(envelopes)))
                elif case == "aiohttp":
                    cases[case].append(await bench.aiohttp_round(bodies(envelopes)))
                else:
                    cases[case].append(await bench.raw_round(bodies(envelopes)))
            print(
                f"  round {i + 1}: notifier {cases['notifier'][-1]['deliveries_s']:,.0f},"
                f" httpx baseline {cases['baseline'][-1]['deliveries_s']:,.0f},"
                f" aiohttp baseline {cases['aiohttp'][-1]['deliveries_s']:,.0f},"
                f" raw client {cases['raw'][-1]['deliveries_s']:,.0f} deliveries/s"
                f" (load average {os.getloadavg()[0]:.2f})",
                flush=True,
            )
        memory["after_rounds"] = rss_mib()

        failing = {"failed_once": await bench.fail_once(batch(WS_RETRY, pending))}
        memory["pending_low_made"] = rss_mib()
        loaded.append({"pending": pending, **await bench.notifier_round(batch(WS, n))})
        memory["pending_low_after_round"] = rss_mib()
        state_low = await bench.retry_state()
        failing["parked_in_sql"] = await bench.park_retries(more)
        memory["pending_high_made"] = rss_mib()
        loaded.append({"pending": pending + more, **await bench.notifier_round(batch(WS, n))})
        memory["pending_high_after_round"] = rss_mib()
        loaded.append({"pending": pending + more, **await bench.notifier_round(batch(WS, n))})
        memory["pending_high_after_second_round"] = rss_mib()
        idle_ms = await bench.idle_dispatch_ms()
        state_high = await bench.retry_state()
        errors += [e for r in [*loaded, *failing.values()] for e in r["errors"]]
        for name, state, count in (
            ("low", state_low, pending),
            ("high", state_high, pending + more),
        ):
            want = {
                "pending": count,
                "pending_future": count,
                "attempted_once": count,
                "all": count,
            }
            if state != want:
                errors.append(f"retries ({name}): {state}, expected {want}")
        if options.profile:
            profile_text = (await bench.notifier_round(batch(WS, n), profile=True))["profile"]
    finally:
        await poster.close()
        await baseline_client.aclose()
        await aiohttp_client.close()
        await engine.dispose()

    notifier, baseline, raw = cases["notifier"], cases["baseline"], cases["raw"]
    with_aiohttp = cases["aiohttp"]
    errors += [e for r in [*notifier, *baseline, *with_aiohttp, *raw] for e in r["errors"]]
    notifier_s = median_of(notifier, "deliveries_s")
    baseline_s = median_of(baseline, "deliveries_s")
    aiohttp_s = median_of(with_aiohttp, "deliveries_s")
    sql_per_round: dict[str, float] = defaultdict(float)
    for r in notifier:
        for name, seconds in r["sql_seconds"].items():
            sql_per_round[name] += seconds / len(notifier)
    sql_total = sum(sql_per_round.values())
    growth = memory["pending_high_after_second_round"] - memory["pending_low_after_round"]
    figures: dict[str, Any] = {
        "bench": "webhooks",
        "messages": n,
        "rounds": options.rounds,
        "connections": connections,
        "batch_size": settings.notifier_webhook_batch_size,
        "notifier_deliveries_s": round(notifier_s),
        "baseline_deliveries_s": round(baseline_s),
        "ratio": round(notifier_s / baseline_s, 3),
        "ratio_samples": [
            round(a["deliveries_s"] / b["deliveries_s"], 3)
            for a, b in zip(notifier, baseline, strict=True)
        ],
        "aiohttp_deliveries_s": round(aiohttp_s),
        "ratio_to_aiohttp": round(notifier_s / aiohttp_s, 3),
        "ratio_to_aiohttp_samples": [
            round(a["deliveries_s"] / b["deliveries_s"], 3)
            for a, b in zip(notifier, with_aiohttp, strict=True)
        ],
        "notifier_samples_deliveries_s": [round(r["deliveries_s"]) for r in notifier],
        "baseline_samples_deliveries_s": [round(r["deliveries_s"]) for r in baseline],
        "aiohttp_samples_deliveries_s": [round(r["deliveries_s"]) for r in with_aiohttp],
        "raw_client_deliveries_s": round(median_of(raw, "deliveries_s")),
        "raw_client_samples_deliveries_s": [round(r["deliveries_s"]) for r in raw],
        "baseline_vs_raw_client": round(baseline_s / median_of(raw, "deliveries_s"), 3),
        "notifier_seconds": round(median_of(notifier, "seconds"), 3),
        "baseline_seconds": round(median_of(baseline, "seconds"), 3),
        "notifier_dispatch_rounds": notifier[0]["dispatch_rounds"],
        "record_events_s": round(median_of(notifier, "record_events_s")),
        "notifier_cpu_ms_per_delivery": round(median_of(notifier, "cpu_ms_per_delivery"), 3),
        "baseline_cpu_ms_per_delivery": round(median_of(baseline, "cpu_ms_per_delivery"), 3),
        "aiohttp_cpu_ms_per_delivery": round(median_of(with_aiohttp, "cpu_ms_per_delivery"), 3),
        "raw_client_cpu_ms_per_delivery": round(median_of(raw, "cpu_ms_per_delivery"), 3),
        "notifier_sql_wall_seconds_per_round": {
            name: round(s, 3) for name, s in sorted(sql_per_round.items(), key=lambda i: -i[1])
        },
        "notifier_sql_share": round(sql_total / median_of(notifier, "seconds"), 3),
        "with_pending_retries": [
            {
                "pending": r["pending"],
                "deliveries_s": round(r["deliveries_s"]),
                "record_events_s": round(r["record_events_s"]),
            }
            for r in loaded
        ],
        "failing_phases": {
            k: {"made": v["made"], "attempts": v["tried"], "seconds": round(v["seconds"], 1)}
            for k, v in failing.items()
        },
        "idle_dispatch_due_ms_with_pending": round(idle_ms, 2),
        "rss_mib": {k: round(v, 1) for k, v in memory.items()},
        "rss_growth_pending_low_to_high_mib": round(growth, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "targets": {
            "deliveries_s_ge_2000": notifier_s >= TARGET_DELIVERIES_S,
            "rss_flat_as_pending_retries_grow": growth < FLAT_MIB,
        },
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {
            name: version(name) for name in ("aiohttp", "httpx", "httpcore", "anyio", "uvloop")
        },
        # httpcore imports sniffio on every pool operation; absent, each is a failed import
        "sniffio_importable": importlib.util.find_spec("sniffio") is not None,
        "errors": errors,
    }
    if profile_text is not None:
        figures["_profile"] = profile_text
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Webhook deliveries/s vs bare httpx and aiohttp loops."
    )
    parser.add_argument("--messages", type=int, default=10_000, help="deliveries per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pending", type=int, default=10_000, help="pending retries, first")
    parser.add_argument(
        "--more-pending", type=int, default=40_000, help="pending retries added afterwards"
    )
    parser.add_argument(
        "--connections", type=int, help="notifier_webhook_connections (default: the setting's)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one more notifier round")
    args = parser.parse_args()
    options = Options(
        args.messages, args.rounds, args.pending, args.more_pending, args.connections, args.profile
    )
    load_start = [round(x, 2) for x in os.getloadavg()]
    workdir = Path(tempfile.mkdtemp(prefix="kizuna-bench-webhooks-"))
    receiver = Receiver(free_port())
    receiver.start()
    try:
        server = EmbeddedPostgres(
            workdir / "pg", free_port(), settings={"shared_buffers": "256MB"}
        ).start()
        try:
            uvloop.run(ensure_database(server.url, "bench"))
            url = server.database_url("bench")
            migrate.upgrade(url)
            figures = uvloop.run(measure(url, receiver, options))
        finally:
            server.stop()
    finally:
        receiver.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    figures["load_average_start"] = load_start
    profile = figures.pop("_profile", None)
    if profile:
        print(profile)
    rss = figures["rss_mib"]
    pending = [r["pending"] for r in figures["with_pending_retries"]]
    met = figures["targets"]
    print(
        f"{figures['messages']:,} Order Completed deliveries per round and case,"
        f" {figures['rounds']} rounds, {figures['connections']} connections,"
        f" batches of {figures['batch_size']} ({figures['notifier_dispatch_rounds']}"
        " dispatch rounds)\n"
        f"notifier   {figures['notifier_deliveries_s']:>6,} deliveries/s"
        f"  {figures['notifier_cpu_ms_per_delivery']} ms CPU each"
        f"  (rounds {figures['notifier_samples_deliveries_s']})\n"
        f"httpx      {figures['baseline_deliveries_s']:>6,} deliveries/s"
        f"  {figures['baseline_cpu_ms_per_delivery']} ms CPU each"
        f"  (rounds {figures['baseline_samples_deliveries_s']}; bare httpx)\n"
        f"aiohttp    {figures['aiohttp_deliveries_s']:>6,} deliveries/s"
        f"  {figures['aiohttp_cpu_ms_per_delivery']} ms CPU each"
        f"  (rounds {figures['aiohttp_samples_deliveries_s']}; bare aiohttp)\n"
        f"raw client {figures['raw_client_deliveries_s']:>6,} deliveries/s"
        f"  {figures['raw_client_cpu_ms_per_delivery']} ms CPU each"
        f"  (rounds {figures['raw_client_samples_deliveries_s']}; asyncio streams)\n"
        f"ratio      {figures['ratio']} notifier ÷ httpx (rounds {figures['ratio_samples']}),"
        f" {figures['ratio_to_aiohttp']} notifier ÷ aiohttp"
        f" (rounds {figures['ratio_to_aiohttp_samples']});"
        f" target ≥ {TARGET_DELIVERIES_S:,}/s:"
        f" {'met' if met['deliveries_s_ge_2000'] else 'NOT met'}\n"
        f"record     {figures['record_events_s']:,} events/s (not in the rates)\n"
        f"SQL        {figures['notifier_sql_share']:.0%} of the notifier's time (overlaps posts):"
        f" {figures['notifier_sql_wall_seconds_per_round']}\n"
        f"pending    {figures['with_pending_retries']};"
        f" idle dispatch_due {figures['idle_dispatch_due_ms_with_pending']} ms\n"
        f"RSS MiB    {rss}; growth {pending[0]:,} → {pending[-1]:,} pending retries"
        f" {figures['rss_growth_pending_low_to_high_mib']} MiB"
        f" ({'flat' if met['rss_flat_as_pending_retries_grow'] else 'NOT flat'});"
        f" peak {figures['peak_rss_mib']}\n"
        f"load avg   start {figures['load_average_start']}, end {figures['load_average_end']};"
        f" sniffio importable: {figures['sniffio_importable']}"
    )
    if figures["errors"]:
        print("ERRORS   ", "; ".join(figures["errors"]))
    print(json.dumps(figures))
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
