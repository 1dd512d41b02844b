"""Feeds the model's events to a sender: the backfill as fast as ingest takes it, the live
stream at the pace of its timestamps (each event sent when its time comes, in batches at most
``flush_every`` seconds old). Clock and sleep are injected."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from kizuna.shop.sender import MAX_BATCH_EVENTS
from kizuna.shop.sessions import SimEvent

Send = Callable[[list[dict[str, Any]]], None]


def send_backfill(events: Iterable[SimEvent], send: Send, batch: int = MAX_BATCH_EVENTS) -> None:
    buffer: list[dict[str, Any]] = []
    for event in events:
        buffer.append(event.call)
        if len(buffer) >= batch:
            send(buffer)
            buffer = []
    if buffer:
        send(buffer)


def send_live(
    events: Iterable[SimEvent],
    send: Send,
    *,
    origin: datetime,
    duration: float | None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    flush_every: float = 1.0,
    batch: int = MAX_BATCH_EVENTS,
) -> None:
    """Sends each event when ``clock`` has advanced by its offset from ``origin``; stops at the
    first event ``duration`` seconds or more after ``origin`` (None: never)."""
    started = clock()
    buffer: list[dict[str, Any]] = []
    flushed = 0.0  # seconds after start of the last flush

    def flush() -> None:
        nonlocal buffer, flushed
        if buffer:
            send(buffer)
            buffer = []
        flushed = clock() - started

    for event in events:
        due = (event.at - origin).total_seconds()
        if duration is not None and due >= duration:
            break
        while (elapsed := clock() - started) < due:
            if buffer and elapsed >= flushed + flush_every:
                flush()
                continue
            wake = min(due, flushed + flush_every) if buffer else due
            sleep(max(wake - elapsed, 0.001))
        buffer.append(event.call)
        if len(buffer) >= batch or (clock() - started) >= flushed + flush_every:
            flush()
    flush()
