"""Delivery outcomes from the notifier that change what may be sent to a person: a hard bounce
or a spam complaint becomes a sticky suppression, recorded as an event on the timeline."""

from __future__ import annotations

from kizuna.envelope import Envelope

HARD = frozenset({"hard", "permanent"})


def as_tracked_event(outcome: Envelope) -> Envelope | None:
    """The Segment-spec email event the outcome stands for, or None if it changes nothing."""
    payload = outcome.payload
    if payload.get("channel", "email") != "email":
        return None
    if outcome.type == "delivery.bounced" and str(payload.get("bounce_type", "")).lower() in HARD:
        name, properties = "Email Bounced", {"bounce_type": "hard"}
    elif outcome.type == "delivery.complained":
        name, properties = "Email Marked as Spam", {}
    else:
        return None
    if isinstance(payload.get("send_id"), str):
        properties["message_id"] = payload["send_id"]
    return Envelope(
        id=outcome.id,
        type="track",
        workspace_id=outcome.workspace_id,
        customer_key=outcome.customer_key,
        occurred_at=outcome.occurred_at,
        received_at=outcome.received_at,
        payload={
            "type": "track",
            "event": name,
            "properties": properties,
            "customerId": outcome.customer_key,
            "messageId": outcome.id,
        },
    )
