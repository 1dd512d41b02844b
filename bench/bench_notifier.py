"""Notifier email throughput against a local SMTP server, next to a bare aiosmtplib loop.

Run with ``.venv/bin/python bench/bench_notifier.py [--sends N] [--rounds R]`` (default 2,000
sends, 3 rounds: about 2 minutes on 2 cores). Starts an embedded PostgreSQL
(schema applied with ``kizuna.migrate``) in a temporary directory and an aiosmtpd
``Controller`` on a free loopback port, in its own thread and event loop as Controller does
(``--smtp-process``: in a child process instead, so that its CPU and its share of the GIL are
not the benchmark's); its handler only counts messages by Message-ID. Then, in the same run
and against the same server:

(a) notifier: the real notifier app (``kizuna_notifier.main.create_app``, lifespan, consumers
    and background loops included) on the PostgreSQL event log under a fresh topic prefix,
    ``notifier_smtp_url`` pointing at the server, its rate limits (if the settings have them)
    raised far out of the way, and one marketing email template (customer variables, links:
    click tracking, open pixel, unsubscribe link and headers), saved with ``PUT
    /v1/templates/{id}``. Timed from the start of publishing N ``send.requested`` envelopes
    (built beforehand) on ``send-requests`` until the server has received the N-th message:
    consume, ledger, render, tracking, build, SMTP, ledger again, outcomes.
(b) baseline: the same N messages as a bare aiosmtplib user would send them: built once
    beforehand with the notifier's own ``decisions.decide`` and ``email.build`` (render,
    tracked links, pixel, unsubscribe headers), then made into ``EmailMessage`` objects with
    the same headers, text and HTML (``set_content``, ``add_alternative``: how the notifier
    built them until it wrote the bytes itself), sent with aiosmtplib's ``send_message``
    (which flattens each one) over as many connections as the notifier uses
    (``notifier_smtp_connections``), each connected before the timing and reused. Timed
    from the first send until the server has received the N-th.
(b2) raw baseline: the notifier's own bytes for the same messages, sent with ``sendmail``:
    the SMTP exchange alone, the floor no sender can beat.

A warm-up round of (a) and (b) comes first (not counted); the rounds then alternate which
case goes first, and each figure is the median of the rounds. Checked in every round: every
expected Message-ID arrived exactly once, and (a) the ledger shows every send ``sent``. A
failed check fails the run (exit status 1). ``ratio`` = (a) ÷ (b); the target is ≥ 0.7.
Also reported: CPU time of this process per mail in each case, the longest stall of the
event loop during (a) (how late a 10 ms sleep woke up), and the wall time around the
notifier's SQL statements.

``--profile`` runs one more notifier round under cProfile (the main thread only, not the SMTP
server's) and prints the top functions. Prints a summary and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import itertools
import json
import multiprocessing
import os
import platform
import pstats
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email import parser as email_parser
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import parseaddr
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna import auth, migrate, topics
from kizuna.bus import Bus, OutgoingMessage
from kizuna.bus.factory import bus_from_settings
from kizuna.db import create_engine
from kizuna.embedded_pg import EmbeddedPostgres, ensure_database, free_port
from kizuna.envelope import Envelope
from kizuna_notifier.delivery import Links
from kizuna_notifier.domain import decisions, email
from kizuna_notifier.domain.templates import TemplateBody
from kizuna_notifier.main import create_app
from kizuna_notifier.settings import NotifierSettings

TARGET_RATIO = 0.7
HEADERS = (
    "Subject",
    "From",
    "To",
    "Date",
    "Message-ID",
    "X-Kizuna-Send-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)
TEMPLATE_ID = "spring"
TEMPLATE: dict[str, Any] = {
    "name": "Spring teas",
    "channel": "email",
    "topic": "promotions",
    "subject": "{{ customer.first_name }}, the first spring teas are in",
    "preheader": "Shincha from Shizuoka, {{ data.coupon }} inside",
    "html": (
        "<html><body>"
        "<h1>Hello {{ customer.first_name }} {{ customer.last_name }},</h1>"
        "<p>The first harvest of the year has arrived from Shizuoka: bright, grassy and sweet."
        " As one of our {{ customer.traits.plan }} members you get it a week early.</p>"
        '<p><a href="https://shop.example.com/shincha?utm_source=mail">See the new teas</a></p>'
        "<p>Use the code <strong>{{ data.coupon }}</strong> at checkout for 10% off your next"
        " order, valid until the end of the month.</p>"
        '<p><a href="https://shop.example.com/account">Your account</a> ·'
        ' <a href="{{ preferences_url }}">Email preferences</a></p>'
        "<p>Tea Shop, 1-2-3 Ginza, Tokyo</p>"
        "</body></html>"
    ),
    "text": (
        "Hello {{ customer.first_name }} {{ customer.last_name }},\n\n"
        "The first harvest of the year has arrived from Shizuoka: bright, grassy and sweet.\n"
        "As one of our {{ customer.traits.plan }} members you get it a week early.\n\n"
        "See the new teas: https://shop.example.com/shincha\n\n"
        "Use the code {{ data.coupon }} at checkout for 10% off your next order.\n"
    ),
}
SECRET = "b" * 40
SENDER = "Tea Shop <news@tea.example.com>"
PUBLISH_BATCH = 500
TIMEOUT_SECONDS = 300.0
RATE_LIMIT_FIELDS = (
    "notifier_email_per_second",
    "notifier_line_per_second",
    "notifier_webhook_per_second",
)
MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


# --- the SMTP server ------------------------------------------------------------------------


@dataclass
class Phase:
    """The messages of one timed case, as the server saw them."""

    expected: int
    ids: Counter[bytes] = field(default_factory=Counter)
    count: int = 0
    last_at: float = 0.0  # time.perf_counter() at the last message (CLOCK_MONOTONIC on Linux)


class CountingHandler:
    """aiosmtpd handler: counts each message by its Message-ID, keeps nothing else; calls
    ``on_done`` (from the server's thread) when the phase's last expected message is in."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.phase = Phase(0)
        self.on_done: Callable[[], None] = lambda: None

    def begin(self, expected: int, on_done: Callable[[], None]) -> None:
        with self.lock:
            self.phase = Phase(expected)
            self.on_done = on_done

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        content: bytes = envelope.content
        headers_end = content.find(b"\r\n\r\n")
        found = MESSAGE_ID.search(content, 0, headers_end if headers_end >= 0 else len(content))
        message_id = found.group(1) if found else b"?"
        now = time.perf_counter()
        with self.lock:
            phase = self.phase
            phase.ids[message_id] += 1
            phase.count += 1
            phase.last_at = now
            if phase.count == phase.expected:
                self.on_done()
        return "250 Message accepted"


def controller(handler: CountingHandler, port: int) -> Controller:
    return Controller(handler, hostname="127.0.0.1", port=port, server_hostname="smtp.bench")


class ThreadSink:
    """The SMTP server in this process, in Controller's own thread (and event loop): it
    shares the interpreter, and so the GIL, with the notifier or the baseline."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.handler = CountingHandler()
        self.controller = controller(self.handler, port)
        self._done = asyncio.Event()

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    async def begin(self, expected: int) -> float:
        """Starts a phase; returns its start time (perf_counter)."""
        self._done = done = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_done() -> None:
            loop.call_soon_threadsafe(done.set)

        self.handler.begin(expected, on_done)
        return time.perf_counter()

    async def wait_done(self) -> float:
        """When the phase's last expected message arrived (perf_counter)."""
        async with asyncio.timeout(TIMEOUT_SECONDS):
            await self._done.wait()
        with self.handler.lock:
            return self.handler.phase.last_at

    async def phase(self) -> Phase:
        with self.handler.lock:
            phase = self.handler.phase
            return Phase(phase.expected, Counter(phase.ids), phase.count, phase.last_at)


def serve_smtp(port: int, commands: Connection, results: Connection) -> None:
    """The SMTP server in a child process (``--smtp-process``): answers ``begin``/``phase``
    commands; sends ``done`` from the server's thread when a phase is complete."""
    handler = CountingHandler()
    sending = threading.Lock()

    def send(item: Any) -> None:
        with sending:
            results.send(item)

    server = controller(handler, port)
    server.start()
    send(("ready",))
    try:
        while True:
            command = commands.recv()
            if command[0] == "begin":
                handler.begin(command[1], lambda: send(("done",)))
                send(("begun",))
            elif command[0] == "phase":
                with handler.lock:
                    phase = handler.phase
                    send(("phase", phase.expected, dict(phase.ids), phase.count, phase.last_at))
            else:
                break
    finally:
        server.stop()


class ProcessSink:
    """The SMTP server in a child process: its CPU is not the benchmark's. Arrival times come
    from its ``time.perf_counter()``, the system-wide monotonic clock on Linux."""

    def __init__(self, port: int) -> None:
        self.port = port
        context = multiprocessing.get_context("spawn")
        commands_in, self._commands = context.Pipe(duplex=False)
        self._results, results_out = context.Pipe(duplex=False)
        self.process = context.Process(
            target=serve_smtp, args=(port, commands_in, results_out), daemon=True
        )

    def start(self) -> None:
        self.process.start()
        if not self._results.poll(30) or self._results.recv() != ("ready",):
            raise RuntimeError("the SMTP server process did not start")

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._commands.send(("stop",))
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()

    async def _reply(self, kind: str) -> Any:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            while not await asyncio.to_thread(self._results.poll, 0.5):
                pass
        reply = self._results.recv()
        if reply[0] != kind:
            raise RuntimeError(f"SMTP server process: expected {kind}, got {reply[0]}")
        return reply

    async def begin(self, expected: int) -> float:
        self._commands.send(("begin", expected))
        await self._reply("begun")
        return time.perf_counter()

    async def wait_done(self) -> float:
        await self._reply("done")
        return (await self.phase()).last_at

    async def phase(self) -> Phase:
        self._commands.send(("phase",))
        _, expected, ids, count, last_at = await self._reply("phase")
        return Phase(expected, Counter(ids), count, last_at)


Sink = ThreadSink | ProcessSink


def as_email_message(data: bytes) -> EmailMessage:
    """The notifier's mail as an aiosmtplib user would build it for ``send_message``: a new
    ``EmailMessage`` (default policy) with the same headers, text and HTML, made with
    ``set_content`` and ``add_alternative`` (as the notifier itself did until 5a01965)."""
    parsed = email_parser.BytesParser(policy=email_policy.default).parsebytes(data)
    assert isinstance(parsed, EmailMessage)
    message = EmailMessage()
    for name in HEADERS:
        if parsed[name] is not None:
            message[name] = str(parsed[name])
    text, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert isinstance(text, EmailMessage)
    message.set_content(lines(text.get_content()))
    if isinstance(html, EmailMessage) and html is not text:
        message.add_alternative(lines(html.get_content()), subtype="html")
    return message


def lines(content: str) -> str:
    """A part's text with ``\n`` line ends, as a template renders it (the wire has CRLF)."""
    return content.replace("\r\n", "\n")


def arrival_errors(name: str, phase: Phase, expected_ids: set[bytes]) -> list[str]:
    errors = []
    copies = {m: n for m, n in phase.ids.items() if n > 1}
    missing = expected_ids - set(phase.ids)
    unknown = set(phase.ids) - expected_ids
    if copies:
        errors.append(f"{name}: {len(copies)} Message-IDs arrived more than once")
    if missing:
        errors.append(f"{name}: {len(missing)} Message-IDs never arrived")
    if unknown:
        errors.append(f"{name}: {len(unknown)} unexpected Message-IDs")
    return errors


# --- the notifier ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan (consumers and background loops included), reached
    in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            yield client


def notifier_settings(url: str, prefix: str, smtp_port: int) -> NotifierSettings:
    extra: dict[str, Any] = {}
    # per-workspace/channel rate limits (#7): far above what is measured, so they never bind
    for name in RATE_LIMIT_FIELDS:
        if name in NotifierSettings.model_fields:
            extra[name] = 1e6
    return NotifierSettings(
        database_url=url,
        bus_url="postgres",
        topic_prefix=prefix,
        log_level="WARNING",
        log_format="console",
        secret_key=SECRET,
        notifier_tracking_url="http://ingest.bench",
        notifier_public_url="http://notifier.bench",
        notifier_from=SENDER,
        notifier_smtp_url=f"smtp://127.0.0.1:{smtp_port}",
        **extra,
    )


def send_requests(workspace_id: str, label: str, count: int) -> list[Envelope]:
    """``send.requested`` as the journey service publishes them (docs/events.md)."""
    envelopes = []
    for i in range(count):
        send_id = f"send:{label}-{i}:mail:1"
        customer = f"c{i}"
        payload = {
            "send_id": send_id,
            "customer_id": customer,
            "channel": "email",
            "category": "marketing",
            "template": TEMPLATE_ID,
            "data": {"coupon": "SPRING10"},
            "customer": {
                "traits": {
                    "email": f"{customer}@example.com",
                    "first_name": "Hanako",
                    "last_name": f"Yamada{i}",
                    "plan": "gold",
                }
            },
            "journey_id": "spring",
            "journey_version": 1,
            "run_id": f"run-{label}-{i}",
            "step_id": "mail",
        }
        envelopes.append(
            Envelope.new("send.requested", workspace_id, customer, payload, event_id=send_id)
        )
    return envelopes


class SqlTimer:
    """Wall time around the notifier's own SQL statements (its SQLAlchemy engine; the bus uses
    asyncpg directly and is not counted). Other tasks can run on the loop meanwhile, so this
    is an upper bound of the time spent in PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.enabled = False
        event.listen(engine.sync_engine, "before_cursor_execute", self._before)
        event.listen(engine.sync_engine, "after_cursor_execute", self._after)

    @staticmethod
    def label(statement: str) -> str:
        for needle, name in (
            ("INSERT INTO nt_sends", "claim (ledger insert)"),
            ("UPDATE nt_sends SET status =", "finish (ledger update)"),
            ("UPDATE nt_sends SET next_attempt_at", "retry poll"),
            ("FROM nt_consent", "consent look-up"),
            ("FROM nt_templates", "templates look-up"),
            ("nt_channels", "channel settings"),
            ("nt_rate_buckets", "rate-limit bucket"),
            ("pg_try_advisory_xact_lock", "outbox publisher lock"),
            ("nt_outbox", "outbox"),
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


async def watch_loop(stalls: list[float], tick: float = 0.01) -> None:
    """How late each 10 ms sleep wakes up: the event loop's stalls (a handler that computes
    for seconds without awaiting delays every other task of the process, API included)."""
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(tick)
        stalls.append(loop.time() - before - tick)


def cpu_seconds() -> float:
    """CPU time of this process, every thread (the SMTP server's too when it is a thread)."""
    times = os.times()
    return times.user + times.system


@dataclass
class Bench:
    settings: NotifierSettings
    sink: Sink
    bus: Bus
    engine: AsyncEngine
    workspace_id: str
    sql: SqlTimer
    labels: Iterator[int] = field(default_factory=itertools.count)
    prerendered: list[EmailMessage] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    flattened: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def domain(self) -> str:
        return parseaddr(SENDER)[1].rpartition("@")[2]

    async def notifier_round(self, sends: int, profile: bool = False) -> dict[str, Any]:
        label = f"n{next(self.labels)}"
        envelopes = send_requests(self.workspace_id, label, sends)
        messages = [OutgoingMessage(e.bus_key, e.to_bytes()) for e in envelopes]
        expected = {email.message_id(e.id, self.domain).encode() for e in envelopes}
        profiler = cProfile.Profile() if profile else None
        self.sql.take()
        started = await self.sink.begin(sends)
        cpu = cpu_seconds()
        self.sql.enabled = True
        stalls: list[float] = []
        watcher = asyncio.create_task(watch_loop(stalls))
        if profiler is not None:
            profiler.enable()
        for start in range(0, len(messages), PUBLISH_BATCH):
            await self.bus.publish_batch(
                topics.SEND_REQUESTS, messages[start : start + PUBLISH_BATCH]
            )
        published = time.perf_counter() - started
        last_at = await self.sink.wait_done()
        if profiler is not None:
            profiler.disable()
        watcher.cancel()
        self.sql.enabled = False
        cpu = cpu_seconds() - cpu
        seconds = last_at - started
        settled = await self.wait_settled(label, sends)
        await asyncio.sleep(0.3)  # a copy sent late would arrive now
        phase = await self.sink.phase()
        figures: dict[str, Any] = {
            "seconds": seconds,
            "emails_s": sends / seconds,
            "cpu_ms_per_email": cpu / sends * 1000,
            "publish_seconds": published,
            "settled_seconds": settled - started,
            "loop_stall_max_s": max(stalls, default=0.0),
            "sql_seconds": self.sql.take(),
            "errors": arrival_errors(f"notifier {label}", phase, expected),
        }
        sent = await self.ledger_sent(label)
        if sent != sends:
            figures["errors"].append(f"notifier {label}: {sent} of {sends} sent in the ledger")
        if profiler is not None:
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(50)
            figures["profile"] = out.getvalue()
        return figures

    async def ledger_sent(self, label: str) -> int:
        async with self.engine.connect() as conn:
            count = await conn.scalar(
                sa.text(
                    "SELECT count(*) FROM nt_sends WHERE workspace_id = :ws"
                    " AND send_id LIKE :prefix AND status = 'sent'"
                ),
                {"ws": self.workspace_id, "prefix": f"send:{label}-%"},
            )
        return int(count or 0)

    async def wait_settled(self, label: str, sends: int) -> float:
        """When the ledger shows every send of the round settled (polled, after the timing)."""
        async with asyncio.timeout(TIMEOUT_SECONDS):
            while True:
                if await self.ledger_sent(label) >= sends:
                    return time.perf_counter()
                await asyncio.sleep(0.01)

    def prerender(self, sends: int) -> None:
        """The messages the notifier would send for ``sends`` requests, built once by its own
        domain code (render, tracked links, pixel, unsubscribe headers), outside any timing,
        and flattened to bytes for the raw case. Every baseline round sends the same ones
        (the server counts each round apart)."""
        template = TemplateBody.model_validate(TEMPLATE)
        links = Links(self.settings)
        name, address = parseaddr(SENDER)
        secret = self.settings.secret_key.get_secret_value()
        tracking_url = self.settings.notifier_tracking_url.rstrip("/")
        messages = []
        for envelope in send_requests(self.workspace_id, "base", sends):
            request = decisions.SendRequest.model_validate(envelope.payload)
            urls = links.for_send(self.workspace_id, request.customer_id, request.send_id)
            decision = decisions.decide(
                request,
                {},
                template,
                {k: v for k, v in urls.items() if k != "one_click_url"},
                {"id": self.workspace_id},
            )
            if not isinstance(decision, decisions.Mail):
                raise RuntimeError(f"the benchmark's request was not mailed: {decision}")
            tracking = email.Tracking(tracking_url, secret, self.workspace_id, request.customer_id)
            messages.append(
                email.build(
                    decision.parts,
                    email.Envelope(name, address, decision.recipient, self.domain),
                    request.send_id,
                    marketing=True,
                    tracking=tracking,
                    unsubscribe_url=urls["unsubscribe_url"],
                    one_click_url=urls["one_click_url"],
                )
            )
        self.ids = [m.message_id for m in messages]
        self.flattened = [(m.recipient, m.data) for m in messages]
        self.prerendered = [as_email_message(m.data) for m in messages]

    async def baseline_round(self, sends: int, raw: bool = False) -> dict[str, Any]:
        """``send_message`` of the pre-built EmailMessages (aiosmtplib flattens each, as it
        does for the notifier); with ``raw``, ``sendmail`` of bytes flattened beforehand."""
        label = f"{'r' if raw else 'b'}{next(self.labels)}"
        if len(self.prerendered) < sends:
            self.prerender(sends)
        messages, flat = self.prerendered[:sends], self.flattened[:sends]
        expected = {message_id.encode() for message_id in self.ids[:sends]}
        sender = parseaddr(SENDER)[1]
        clients = [
            aiosmtplib.SMTP(hostname="127.0.0.1", port=self.sink.port, timeout=30)
            for _ in range(self.settings.notifier_smtp_connections)
        ]
        await asyncio.gather(*(client.connect() for client in clients))
        order = iter(range(sends))  # shared by the workers: each message goes out once
        refused: list[str] = []

        async def worker(client: aiosmtplib.SMTP) -> None:
            for i in order:
                if raw:
                    errors, _ = await client.sendmail(sender, [flat[i][0]], flat[i][1])
                else:
                    errors, _ = await client.send_message(messages[i])
                if errors:
                    refused.append(str(errors))

        try:
            started = await self.sink.begin(sends)
            cpu = cpu_seconds()
            await asyncio.gather(*(worker(client) for client in clients))
            last_at = await self.sink.wait_done()
            cpu = cpu_seconds() - cpu
        finally:
            for client in clients:
                with contextlib.suppress(Exception):
                    await client.quit()
        seconds = last_at - started
        await asyncio.sleep(0.3)
        name = "raw baseline" if raw else "baseline"
        errors = arrival_errors(f"{name} {label}", await self.sink.phase(), expected)
        if refused:
            errors.append(f"{name} {label}: {len(refused)} sends refused")
        return {
            "seconds": seconds,
            "emails_s": sends / seconds,
            "cpu_ms_per_email": cpu / sends * 1000,
            "message_bytes": statistics.mean(len(raw_bytes) for _, raw_bytes in flat),
            "errors": errors,
        }


# --- the run --------------------------------------------------------------------------------


async def put_template(client: httpx.AsyncClient, admin_key: str) -> None:
    response = await client.put(
        f"/v1/templates/{TEMPLATE_ID}",
        json=TEMPLATE,
        headers={"Authorization": f"Bearer {admin_key}"},
    )
    if response.status_code != 200:
        raise RuntimeError(f"template refused: {response.status_code} {response.text}")


def median_of(rounds: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rounds))


async def measure(url: str, sink: Sink, sends: int, rounds: int, profile: bool) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    settings = notifier_settings(url, prefix, sink.port)
    engine = create_engine(url, pool_size=2)
    async with engine.begin() as conn:
        workspace_id = await auth.create_workspace(conn, "bench")
        admin = await auth.issue_key(conn, workspace_id, "admin", "bench admin")
    bus = bus_from_settings(settings)
    await bus.start()
    cases: dict[str, list[dict[str, Any]]] = {"notifier": [], "baseline": [], "raw": []}
    warmups: list[dict[str, Any]] = []
    profile_text = None
    try:
        app = create_app(settings)
        async with running(app) as client:
            await put_template(client, admin.secret)
            sql = SqlTimer(app.state.delivery.engine)
            bench = Bench(settings, sink, bus, engine, workspace_id, sql)
            bench.prerender(sends)
            warm = min(sends, 500)
            warmups += [await bench.notifier_round(warm), await bench.baseline_round(warm)]
            for i in range(rounds):
                order = ["notifier", "baseline", "raw"]
                for case in order if i % 2 == 0 else order[::-1]:
                    if case == "notifier":
                        cases[case].append(await bench.notifier_round(sends))
                    else:
                        cases[case].append(await bench.baseline_round(sends, raw=case == "raw"))
                print(
                    f"  round {i + 1}: notifier {cases['notifier'][-1]['emails_s']:,.0f},"
                    f" baseline {cases['baseline'][-1]['emails_s']:,.0f},"
                    f" raw baseline {cases['raw'][-1]['emails_s']:,.0f} emails/s",
                    flush=True,
                )
            if profile:
                profile_text = (await bench.notifier_round(sends, profile=True))["profile"]
    finally:
        await bus.close()
        await engine.dispose()
    notifier, baseline, raw = cases["notifier"], cases["baseline"], cases["raw"]
    ratio = median_of(notifier, "emails_s") / median_of(baseline, "emails_s")
    sql_per_round: dict[str, float] = defaultdict(float)
    for r in notifier:
        for name, seconds in r["sql_seconds"].items():
            sql_per_round[name] += seconds / len(notifier)
    errors = [e for r in [*warmups, *notifier, *baseline, *raw] for e in r["errors"]]
    figures: dict[str, Any] = {
        "bench": "notifier",
        "sends": sends,
        "rounds": rounds,
        "smtp_server": "process" if isinstance(sink, ProcessSink) else "thread",
        "smtp_connections": settings.notifier_smtp_connections,
        "consumer_batch_size": settings.consumer_batch_size,
        "notifier_emails_s": round(median_of(notifier, "emails_s")),
        "baseline_emails_s": round(median_of(baseline, "emails_s")),
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "met": ratio >= TARGET_RATIO,
        "raw_baseline_emails_s": round(median_of(raw, "emails_s")),
        "notifier_vs_raw_baseline": round(
            median_of(notifier, "emails_s") / median_of(raw, "emails_s"), 3
        ),
        "notifier_samples_emails_s": [round(r["emails_s"]) for r in notifier],
        "baseline_samples_emails_s": [round(r["emails_s"]) for r in baseline],
        "raw_baseline_samples_emails_s": [round(r["emails_s"]) for r in raw],
        "notifier_seconds": round(median_of(notifier, "seconds"), 3),
        "baseline_seconds": round(median_of(baseline, "seconds"), 3),
        "notifier_cpu_ms_per_email": round(median_of(notifier, "cpu_ms_per_email"), 2),
        "baseline_cpu_ms_per_email": round(median_of(baseline, "cpu_ms_per_email"), 2),
        "raw_baseline_cpu_ms_per_email": round(median_of(raw, "cpu_ms_per_email"), 2),
        "notifier_publish_seconds": round(median_of(notifier, "publish_seconds"), 3),
        "notifier_loop_stall_max_s": round(max(r["loop_stall_max_s"] for r in notifier), 3),
        "notifier_settled_seconds": round(median_of(notifier, "settled_seconds"), 3),
        "notifier_sql_wall_seconds_per_round": {
            name: round(s, 3) for name, s in sorted(sql_per_round.items(), key=lambda i: -i[1])
        },
        "message_bytes": round(median_of(baseline, "message_bytes")),
        "rate_limits_raised": [n for n in RATE_LIMIT_FIELDS if n in NotifierSettings.model_fields],
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "errors": errors,
    }
    if profile_text is not None:
        figures["_profile"] = profile_text
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description="Notifier emails/s vs a bare aiosmtplib loop.")
    parser.add_argument("--sends", type=int, default=2000, help="emails per round and case")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--smtp-process",
        action="store_true",
        help="run the SMTP server in a child process instead of a thread of this one",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one more notifier round")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kizuna-bench-notifier-"))
    sink: Sink = ProcessSink(free_port()) if args.smtp_process else ThreadSink(free_port())
    sink.start()
    try:
        server = EmbeddedPostgres(workdir / "pg", free_port()).start()
        try:
            asyncio.run(ensure_database(server.url, "bench"))
            url = server.database_url("bench")
            migrate.upgrade(url)
            figures = asyncio.run(measure(url, sink, args.sends, args.rounds, args.profile))
        finally:
            server.stop()
    finally:
        sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    profile = figures.pop("_profile", None)
    if profile:
        print(profile)
    print(
        f"{figures['sends']:,} marketing emails per round and case"
        f" ({figures['message_bytes']:,} bytes each), {figures['rounds']} rounds,"
        f" {figures['smtp_connections']} SMTP connections, SMTP server in a"
        f" {figures['smtp_server']}\n"
        f"notifier      {figures['notifier_emails_s']:>6,} emails/s"
        f"  {figures['notifier_cpu_ms_per_email']} ms CPU/email"
        f"  (rounds {figures['notifier_samples_emails_s']}; publish"
        f" {figures['notifier_publish_seconds']} s, ledger settled after"
        f" {figures['notifier_settled_seconds']} s; longest event-loop stall"
        f" {figures['notifier_loop_stall_max_s']} s)\n"
        f"baseline      {figures['baseline_emails_s']:>6,} emails/s"
        f"  {figures['baseline_cpu_ms_per_email']} ms CPU/email"
        f"  (rounds {figures['baseline_samples_emails_s']})\n"
        f"raw baseline  {figures['raw_baseline_emails_s']:>6,} emails/s"
        f"  {figures['raw_baseline_cpu_ms_per_email']} ms CPU/email"
        f"  (rounds {figures['raw_baseline_samples_emails_s']}; bytes flattened beforehand)\n"
        f"ratio         {figures['ratio']} notifier ÷ baseline (target ≥ {TARGET_RATIO}:"
        f" {'met' if figures['met'] else 'NOT met'});"
        f" {figures['notifier_vs_raw_baseline']} ÷ raw baseline\n"
        f"notifier SQL, wall s per round: {figures['notifier_sql_wall_seconds_per_round']}"
    )
    if figures["errors"]:
        print("ERRORS   ", "; ".join(figures["errors"]))
    print(json.dumps(figures))
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
