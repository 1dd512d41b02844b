from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from kizuna.envelope import SCHEMA_VERSION, Envelope


def test_round_trips_through_bytes() -> None:
    envelope = Envelope.new("track", "ws_1", "user-1", {"event": "Order Completed"})
    assert Envelope.from_bytes(envelope.to_bytes()) == envelope
    assert envelope.schema_version == SCHEMA_VERSION


def test_a_payload_orjson_cannot_write_is_written_by_pydantic() -> None:
    from decimal import Decimal

    envelope = Envelope.new("track", "ws_1", "u", {"total": Decimal("1.5"), "big": 2**70})
    assert Envelope.from_bytes(envelope.to_bytes()).payload == {"total": "1.5", "big": 2**70}


def test_bus_key_groups_one_customer_of_one_workspace() -> None:
    a = Envelope.new("page", "ws_1", "anon-9", {})
    b = Envelope.new("track", "ws_1", "anon-9", {})
    c = Envelope.new("track", "ws_2", "anon-9", {})
    assert a.bus_key == b.bus_key != c.bus_key


@pytest.mark.parametrize(
    ("field", "value"),
    [("workspace_id", ""), ("occurred_at", "2026-01-01T00:00:00"), ("unexpected", 1)],
)
def test_rejects_invalid_envelopes(field: str, value: object) -> None:
    data = Envelope.new("track", "ws_1", "u", {}).model_dump(mode="json")
    data[field] = value
    with pytest.raises(ValidationError) as error:
        Envelope.model_validate(data)
    assert field in str(error.value)


def test_keeps_given_time_and_id() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    envelope = Envelope.new("track", "ws", "u", {}, occurred_at=when, event_id="m-1")
    assert (envelope.occurred_at, envelope.id) == (when, "m-1")


def test_event_context_binds_ids_for_logs_and_restores() -> None:
    import structlog

    from kizuna.logs import event_context

    with event_context("m-1", "ws_1"):
        bound = structlog.contextvars.get_contextvars()
        assert (bound["event_id"], bound["workspace_id"]) == ("m-1", "ws_1")
    assert "event_id" not in structlog.contextvars.get_contextvars()
