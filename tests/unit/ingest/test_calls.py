from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kizuna_ingest.domain.calls import event_time, to_envelope
from kizuna_ingest.domain.errors import InvalidCall
from kizuna_ingest.domain.machine import suspect_machine
from kizuna_ingest.domain.ratelimit import RateLimiter

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def envelope(call: dict[str, Any], call_type: str | None = "track", **kw: Any) -> Any:
    return to_envelope(call, call_type, "ws_1", NOW, **kw)


def test_user_id_wins_as_customer_key_and_message_id_becomes_event_id() -> None:
    result = envelope({"userId": 42, "anonymousId": "a", "event": "E", "messageId": "m"})
    assert (result.customer_key, result.id, result.type) == ("42", "m", "track")
    assert result.bus_key == "ws_1:42"


def test_batch_defaults_merge_under_item_values() -> None:
    result = envelope(
        {"type": "page", "anonymousId": "a", "context": {"ip": "1.2.3.4"}},
        None,
        defaults={"context": {"ip": "0.0.0.0", "library": {"name": "x"}}},
    )
    assert result.payload["context"] == {"ip": "1.2.3.4", "library": {"name": "x"}}


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ({"event": "E"}, "userId"),
        ({"userId": {"a": 1}, "event": "E"}, "userId"),
        ({"userId": "x" * 401, "event": "E"}, "userId"),
        ({"userId": "u"}, "event"),
        ({"userId": "u", "event": "  "}, "event"),
        ({"userId": "u", "event": "E", "traits": "no"}, "traits"),
        ({"userId": "u", "event": "E", "timestamp": "2026-01-01T00:00:00"}, "timestamp"),
        ({"userId": "u", "event": "E", "sentAt": 12}, "sentAt"),
    ],
)
def test_invalid_calls_name_the_field(call: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidCall) as error:
        envelope(call)
    assert error.value.detail.field == field


def test_long_message_ids_and_absurd_clock_skew_are_clear_errors_or_kept() -> None:
    assert envelope({"userId": "u", "event": "E", "messageId": "m" * 400}).id == "m" * 400
    with pytest.raises(InvalidCall) as error:
        envelope({"userId": "u", "event": "E", "messageId": "m" * 401})
    assert error.value.detail.field == "messageId"
    with pytest.raises(InvalidCall) as error:
        envelope(
            {
                "userId": "u",
                "event": "E",
                "timestamp": "0001-01-01T00:00:00Z",
                "sentAt": "9999-12-31T00:00:00Z",
            }
        )
    assert error.value.detail.field == "sentAt"


def test_type_from_body_must_be_known() -> None:
    with pytest.raises(InvalidCall, match="type"):
        envelope({"type": "launch", "userId": "u"}, None)


def test_clock_skew_is_corrected_from_sent_at() -> None:
    fast = NOW + timedelta(hours=3)
    call = {"timestamp": (fast - timedelta(seconds=30)).isoformat(), "sentAt": fast.isoformat()}
    timestamp, original = event_time(call, NOW)
    assert timestamp == NOW - timedelta(seconds=30)
    assert original == fast - timedelta(seconds=30)


def test_without_sent_at_the_timestamp_is_trusted_and_default_is_receipt() -> None:
    assert event_time({"timestamp": "2020-01-01T00:00:00Z"}, NOW)[0].year == 2020
    assert event_time({}, NOW) == (NOW, None)
    assert event_time({"sentAt": NOW.isoformat()}, NOW) == (NOW, None)


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({"order_id": "o", "revenue": -1}, "properties.revenue"),
        ({"order_id": "o", "total": "12"}, "properties.total"),
        ({"order_id": "o", "revenue": True}, "properties.revenue"),
        ({"order_id": "o", "currency": "yen!"}, "properties.currency"),
        ({"order_id": "o", "products": {"p": 1}}, "properties.products"),
        ({"order_id": "o", "products": [{"quantity": -2}]}, "properties.products[0].quantity"),
        ({"revenue": 5}, "properties.order_id"),
    ],
)
def test_order_completed_key_fields(properties: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidCall) as error:
        envelope({"userId": "u", "event": "Order Completed", "properties": properties})
    assert error.value.detail.field == field


def test_valid_order_and_unknown_events_pass() -> None:
    order = {
        "order_id": 7,
        "revenue": 0,
        "discount": -100,
        "currency": "JPY",
        "products": [{"product_id": "p", "price": 10.5, "quantity": 3}],
    }
    envelope({"userId": "u", "event": "Order Completed", "properties": order})
    envelope({"userId": "u", "event": "Whatever", "properties": {"revenue": "n/a"}})


@pytest.mark.parametrize(
    ("agent", "delivered_ago", "kind", "flagged"),
    [
        ("Mozilla/5.0 (Macintosh) AppleWebKit Safari", 3600, "click", False),
        ("Mozilla/5.0 (Macintosh) AppleWebKit Safari", 0.2, "click", True),
        ("Mozilla/5.0 (compatible; Barracuda Sentinel)", 3600, "click", True),
        ("Mozilla/5.0 via ggpht.com GoogleImageProxy", 3600, "open", True),
        ("Mozilla/5.0", 3600, "open", True),
        ("", 3600, "open", True),
    ],
)
def test_machine_opens_and_clicks_are_flagged(
    agent: str, delivered_ago: float, kind: str, flagged: bool
) -> None:
    assert (suspect_machine(agent, 1000.0 - delivered_ago, 1000.0, kind) is not None) is flagged


def test_rate_limiter_allows_burst_then_asks_to_wait() -> None:
    now = [0.0]
    limiter = RateLimiter(lambda: now[0], burst_seconds=1.0)
    assert limiter.take("k", rate=10, count=10) == 0
    assert limiter.take("k", rate=10) == pytest.approx(0.1)
    now[0] = 0.5
    assert limiter.take("k", rate=10, count=5) == 0
    assert limiter.take("other", rate=10) == 0


async def test_batch_level_context_must_be_an_object() -> None:
    from kizuna_ingest.handlers import accept_batch

    async def publish(_: object) -> None:
        raise AssertionError("nothing is published")

    with pytest.raises(InvalidCall) as error:
        await accept_batch({"batch": [], "context": [1]}, "ws", NOW, publish)
    assert error.value.detail.field == "context"
