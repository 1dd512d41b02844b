"""Integration webhooks, the pure part: which Kizuna events become which webhook messages,
their stable ids and bodies, and when a failed delivery is tried again."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from kizuna.envelope import Envelope

EVENT_TYPES = (
    "customer.created",
    "customer.merged",
    "customer.erased",
    "segment.entered",
    "segment.exited",
    "journey.entered",
    "journey.completed",
    "message.sent",
    "message.failed",
    "email.opened",
    "email.clicked",
    "email.unsubscribed",
    "order.completed",
    "webhook.endpoint.disabled",
)
TRACKED = {
    "Order Completed": "order.completed",
    "Email Opened": "email.opened",
    "Email Link Clicked": "email.clicked",
    "Unsubscribed": "email.unsubscribed",
}
PASSED_AS_THEY_ARE = frozenset(
    {
        "customer.created",
        "customer.merged",
        "customer.erased",
        "segment.entered",
        "segment.exited",
        "journey.entered",
        "journey.completed",
    }
)
OUTCOMES = {
    "delivery.delivered": "message.sent",
    "delivery.failed": "message.failed",
    "delivery.bounced": "message.failed",
}
# after the 1st, 2nd … failed attempt; the 8th failure makes the message dead
SCHEDULE = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=24),
)
JITTER = 0.1
LONGEST_RETRY_AFTER = timedelta(hours=24)


@dataclass(frozen=True)
class Message:
    id: str
    type: str
    body: str  # the JSON sent and signed: {"type", "timestamp", "data"}
    occurred_at: datetime
    customer_id: str | None


def message_id(workspace_id: str, source_id: str, kind: str) -> str:
    digest = hashlib.sha256(f"{workspace_id}\0{source_id}\0{kind}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def build(
    workspace_id: str,
    source_id: str,
    kind: str,
    at: datetime,
    data: Any,
    customer_id: str | None = None,
) -> Message:
    body = orjson.dumps({"type": kind, "timestamp": at.isoformat(), "data": data}).decode()
    return Message(message_id(workspace_id, source_id, kind), kind, body, at, customer_id)


def message_for(event: Envelope) -> Message | None:
    """The webhook message an event on the bus stands for, or None."""
    kind, data = _kind_and_data(event)
    if kind is None:
        return None
    return build(event.workspace_id, event.id, kind, event.occurred_at, data, event.customer_key)


def _kind_and_data(event: Envelope) -> tuple[str | None, Any]:
    payload = event.payload
    if event.type in PASSED_AS_THEY_ARE:
        return event.type, {"customer_id": event.customer_key, **payload}
    if event.type in OUTCOMES:
        return OUTCOMES[event.type], {"customer_id": event.customer_key, **payload}
    if event.type == "track":
        kind = TRACKED.get(str(payload.get("event")))
        properties = payload.get("properties") or {}
        if kind == "email.unsubscribed" and str(properties.get("channel") or "email") != "email":
            return None, None
        if kind is None:
            return None, None
        return kind, {
            "customer_id": event.customer_key,
            "event_id": event.id,
            "event": payload.get("event"),
            "properties": properties,
        }
    return None, None


def subscribed(event_types: list[str], kind: str) -> bool:
    return "*" in event_types or kind in event_types


def jitter(message: str, endpoint: str, attempt: int) -> float:
    """A factor in [1 - JITTER, 1 + JITTER], the same for the same try of the same delivery."""
    digest = hashlib.sha256(f"{message}\0{endpoint}\0{attempt}".encode()).digest()
    return 1 - JITTER + 2 * JITTER * int.from_bytes(digest[:4]) / 0xFFFFFFFF


def next_attempt(
    failures: int, now: datetime, retry_after: timedelta | None, factor: float
) -> datetime | None:
    """When to try again after the ``failures``-th failed attempt, or None: it is dead."""
    if failures > len(SCHEDULE):
        return None
    if retry_after is not None:
        return now + min(max(retry_after, timedelta(seconds=1)), LONGEST_RETRY_AFTER)
    return now + SCHEDULE[failures - 1] * factor


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """``Retry-After`` as seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return timedelta(seconds=int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when - now, timedelta(0))
