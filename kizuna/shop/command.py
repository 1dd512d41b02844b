"""`kizuna simulate-shop`, behind the typer command: finds the keys, runs the backfill and the
live phase through a sender, prints progress and a summary, and asks profile what arrived."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TextIO

import httpx

from kizuna.settings import KizunaSettings
from kizuna.shop import live, model, runner
from kizuna.shop.check import check_profile
from kizuna.shop.sender import Aborted, Sender
from kizuna.shop.tally import yen

ORDER = (
    "page", "identify", "Consent Updated", "Product Viewed", "Product Added", "Checkout Started",
    "Order Completed", "Order Refunded", "Newsletter Subscribed", "Asset Downloaded",
    "Seminar Registered",
)  # fmt: skip


@dataclass(frozen=True)
class Options:
    customers: int
    seed: int
    backfill_days: float
    backfill: bool  # False: the history was sent by an earlier run with this seed
    rate: float
    duration: float | None
    ingest_url: str
    profile_url: str
    write_key: str | None
    admin_key: str | None
    now: str | None  # ISO 8601 with a zone
    check: bool


def find_key(kind: Literal["write", "admin"], given: str | None) -> str | None:
    """--write-key / --admin-key, else KIZUNA_WRITE_KEY / KIZUNA_ADMIN_KEY, else the key
    `kizuna dev` generated and keeps in KIZUNA_DATA_DIR/credentials.json."""
    if given:
        return given
    settings = KizunaSettings()
    configured = settings.write_key if kind == "write" else settings.admin_key
    if configured is not None:
        return configured.get_secret_value()
    try:
        saved = json.loads((settings.data_dir / "credentials.json").read_text())
    except (OSError, ValueError):
        return None
    value = saved.get(f"{kind}_key") if isinstance(saved, dict) else None
    return value if isinstance(value, str) else None


class Progress:
    """One line, rewritten in place on a terminal, else printed every few seconds."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.every = 0.5 if self.tty else 5.0
        self.shown = 0.0
        self.open = False  # a line without its newline yet

    def __call__(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.shown < self.every:
            return
        self.shown = now
        self.stream.write(f"\r\x1b[K{text}" if self.tty else f"{text}\n")
        self.stream.flush()
        self.open = self.tty

    def done(self) -> None:
        if self.open:
            self.stream.write("\n")
            self.open = False


def summary(sender: Sender, took: float) -> list[str]:
    stats, tally = sender.stats, sender.tally
    errors = ", ".join(f"{code} x{n}" for code, n in sorted(stats.errors.items())) or "none"
    names = sorted(tally.by_name, key=lambda n: (ORDER.index(n) if n in ORDER else 99, n))
    lines = [
        f"sent {stats.accepted:,} events in {stats.requests:,} requests ({took:.1f} s):"
        f" rejected {stats.rejected:,}, failed {stats.failed:,};"
        f" HTTP errors {errors} ({stats.retries:,} retried)",
        *(
            ["  " + " · ".join(f"{name} {tally.by_name[name]:,}" for name in names)]
            if names
            else []
        ),
        f"  customers {len(tally.customers):,} · orders {len(tally.orders):,}"
        f" · revenue {yen(tally.revenue)} (net of {tally.refunds:,} refunds)",
    ]
    lines += [f"  rejected: {problem} (x{n})" for problem, n in stats.problems.most_common(5)]
    return lines


@contextlib.contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM ends the run as Ctrl-C does: the summary is still printed."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _problem(options: Options) -> str | None:
    if 0 < options.backfill_days < model.MIN_BACKFILL_DAYS:
        return "--backfill-days must be 0 (no history) or at least 1"
    if options.now:
        try:
            given = datetime.fromisoformat(options.now)
        except ValueError:
            return f"--now {options.now!r} is not an ISO 8601 time"
        if given.tzinfo is None:
            return "--now needs a time zone (e.g. 2025-06-01T09:00:00+09:00 or …Z)"
    return None


def _sending(sender: Sender, progress: Progress, phase: str, total: int = 0) -> runner.Send:
    began, before = time.monotonic(), sender.stats.accepted

    def send(calls: list[dict[str, Any]]) -> None:
        sender.send(calls)
        stats = sender.stats
        done = stats.accepted - before
        rate = done / max(time.monotonic() - began, 1e-6)
        progress(
            f"{phase}: {done:,}{f'/{total:,}' if total else ''} events · {rate:,.0f}/s"
            f" · orders {len(sender.tally.orders):,}"
            f" · HTTP errors {sum(stats.errors.values()):,}"
        )

    return send


def _simulate(
    config: model.ShopConfig, options: Options, sender: Sender, progress: Progress, err: TextIO
) -> int:
    """The backfill, then the live phase; 1 if sending had to stop."""
    with _stopped_by_sigterm():
        try:
            if options.backfill:
                history = list(model.backfill(config))
                runner.send_backfill(history, _sending(sender, progress, "backfill", len(history)))
            if options.duration is None or options.duration > 0:
                runner.send_live(
                    live.stream(config, options.rate),
                    _sending(sender, progress, "live"),
                    origin=config.now,
                    duration=options.duration,
                )
        except Aborted as aborted:
            progress.done()
            err.write(f"kizuna simulate-shop: {aborted}\n")
            return 1
        except KeyboardInterrupt:
            progress.done()
            err.write("interrupted\n")
    return 0


def run(options: Options, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    write_key = find_key("write", options.write_key)
    if write_key is None:
        err.write(
            "kizuna simulate-shop: give --write-key, set KIZUNA_WRITE_KEY or run `kizuna dev`\n"
        )
        return 2
    problem = _problem(options)
    if problem:
        err.write(f"kizuna simulate-shop: {problem}\n")
        return 2
    given = datetime.fromisoformat(options.now) if options.now else datetime.now(UTC)
    config = model.ShopConfig(
        given.astimezone(UTC).replace(microsecond=0),
        options.seed,
        options.customers,
        options.backfill_days,
    )
    live = "until Ctrl-C" if options.duration is None else f"for {options.duration:g} s"
    live = f"{options.rate:g} events/s {live}" if options.duration != 0 else "no live phase"
    history = f"{config.backfill_days:g} days of history" + (
        "" if options.backfill else " (not sent)"
    )
    out.write(
        f"simulate-shop: seed {config.seed}, {config.customers:,} customers, {history},"
        f" then {live} → {options.ingest_url}\n"
    )
    out.flush()
    progress, started = Progress(err), time.monotonic()
    with httpx.Client(timeout=30.0) as client:
        sender = Sender(client, options.ingest_url, write_key)
        code = _simulate(config, options, sender, progress, err)
        progress.done()
        code = code or (1 if sender.stats.failed or sender.stats.rejected else 0)
        out.write("\n".join(summary(sender, time.monotonic() - started)) + "\n")
        out.flush()
        admin_key = find_key("admin", options.admin_key)
        if not options.check:
            return code
        if not admin_key:
            out.write("profile: not checked (no admin key: --admin-key or KIZUNA_ADMIN_KEY)\n")
            return code
        first = (config.start if config.has_history else config.now).date() - timedelta(days=1)
        try:
            checked = check_profile(
                client, options.profile_url, admin_key, first, sender.tally, progress
            )
        except KeyboardInterrupt:
            checked = "profile: check interrupted"
        progress.done()
        out.write(checked + "\n")
    return code
