from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import given
from hypothesis import strategies as st

from kizuna.envelope import Envelope
from kizuna_notifier.domain import endpoints, integrations

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def track(event: str, **properties: object) -> Envelope:
    return Envelope.new(
        "track",
        "ws1",
        "c1",
        {"type": "track", "event": event, "properties": properties},
        occurred_at=NOW,
        event_id="ev1",
    )


def test_kizuna_events_become_webhook_messages_with_stable_ids() -> None:
    opened = integrations.message_for(track("Email Opened", message_id="send:1"))
    assert opened is not None
    assert opened.type == "email.opened"
    assert opened.id == integrations.message_for(track("Email Opened")).id  # type: ignore[union-attr]
    body = orjson.loads(opened.body)
    assert body["type"] == "email.opened"
    assert body["timestamp"] == NOW.isoformat()
    assert body["data"]["customer_id"] == "c1"
    assert integrations.message_for(track("Page Viewed")) is None
    assert integrations.message_for(track("Unsubscribed", channel="line")) is None
    outcome = Envelope.new("delivery.bounced", "ws1", "c1", {"send_id": "s1"})
    failed = integrations.message_for(outcome)
    assert failed is not None
    assert failed.type == "message.failed"
    assert integrations.message_for(Envelope.new("delivery.suppressed", "ws1", "c1", {})) is None
    merged = integrations.message_for(Envelope.new("customer.merged", "ws1", "c1", {}))
    assert merged is not None
    assert merged.type == "customer.merged"


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert integrations.parse_retry_after("120", NOW) == timedelta(seconds=120)
    assert integrations.parse_retry_after("Tue, 01 Dec 2026 12:01:00 GMT", NOW) == timedelta(
        seconds=60
    )
    assert integrations.parse_retry_after("soon", NOW) is None
    assert integrations.parse_retry_after(None, NOW) is None
    capped = integrations.next_attempt(1, NOW, timedelta(days=9), 1.0)
    assert capped == NOW + timedelta(hours=24)


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20), st.integers(1, 8))
def test_jitter_stays_within_ten_percent_and_is_repeatable(
    message: str, endpoint: str, attempt: int
) -> None:
    factor = integrations.jitter(message, endpoint, attempt)
    assert 0.9 <= factor <= 1.1
    assert factor == integrations.jitter(message, endpoint, attempt)


def test_the_schedule_ends_in_the_dead_letters() -> None:
    waits = [integrations.next_attempt(n, NOW, None, 1.0) for n in range(1, 9)]
    assert waits[0] == NOW + timedelta(seconds=5)
    assert waits[6] == NOW + timedelta(hours=24)
    assert waits[7] is None


def test_a_rotation_keeps_the_old_secret_until_the_overlap_ends() -> None:
    first = endpoints.new_secret()
    stored = [{"secret": first, "expires_at": None}]
    second = endpoints.new_secret()
    rotated = endpoints.rotated(stored, second, NOW, timedelta(hours=1))
    assert [s["secret"] for s in endpoints.active(rotated, NOW)] == [second, first]
    later = NOW + timedelta(hours=2)
    assert [s["secret"] for s in endpoints.active(rotated, later)] == [second]
    third = endpoints.rotated(rotated, endpoints.new_secret(), NOW, timedelta(0))
    assert len(third) == 1
