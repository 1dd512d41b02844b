"""The results and lifecycle consumers skip, undecoded, the messages that cannot matter to
them; every message that can is still decoded."""

from __future__ import annotations

from typing import Any

from kizuna.bus import BusMessage
from kizuna.envelope import Envelope
from kizuna_journey import engagement, runtime


def message(type_: str, payload: dict[str, Any]) -> BusMessage:
    event = Envelope.new(type_, "ws", "c1", payload)
    return BusMessage("t", 0, 0, event.bus_key, event.to_bytes(), {})


def test_every_event_results_record_is_decoded_and_the_rest_skipped() -> None:
    cases = [
        message("delivery.delivered", {"send_id": "send:1"}),
        message("delivery.bounced", {"send_id": "send:1"}),
        message("track", {"event": "Email Opened", "properties": {"message_id": "send:1"}}),
        message("track", {"event": "Email Link Clicked", "properties": {"message_id": "send:2"}}),
        message("track", {"event": "Unsubscribed", "properties": {"message_id": "send:3"}}),
    ]
    for case in cases:
        decoded = runtime.decode_engagement(case)
        assert decoded is not None
        assert engagement.facts(decoded) is not None
    skipped = [
        message("track", {"event": "Checkout Started", "properties": {"value": 30}}),
        message("identify", {"traits": {"email": "a@example.com"}}),
        message("page", {"name": "Home"}),
    ]
    assert [runtime.decode_engagement(case) for case in skipped] == [None, None, None]


def test_only_merges_and_erasures_reach_the_lifecycle_handler() -> None:
    merged = message("customer.merged", {"absorbed_id": "a", "survivor_id": "b"})
    erased = message("customer.erased", {"customer_id": "a", "absorbed_ids": []})
    created = message("customer.created", {"customer_id": "a"})
    assert runtime.decode_lifecycle(merged) == Envelope.from_bytes(merged.value)
    assert runtime.decode_lifecycle(erased) == Envelope.from_bytes(erased.value)
    assert runtime.decode_lifecycle(created) is None
