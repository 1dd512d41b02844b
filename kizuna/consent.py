"""What an event says about a customer's consent per channel (ADR 0005): ``Consent Updated``
{channel, status: granted|revoked | granted: bool, source}, ``Unsubscribed`` {channel, default
email}, and the email suppressions ``Email Bounced`` (hard) and ``Email Marked as Spam``. An
event contract every service reads the same way; how each keeps the newest statement is its
own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Literal

from kizuna.envelope import Envelope

CHANNELS = ("email", "line", "sms", "webhook")
HARD_BOUNCES = frozenset({"hard", "permanent"})
Status = Literal["granted", "revoked", "suppressed"]  # suppressed: sticky, no opt-in lifts it


@dataclass(frozen=True)
class Statement:
    channel: str
    status: Status
    source: str
    stamp: str  # orders statements: event time in UTC as text, then the event id

    def order(self) -> tuple[str, bool, str]:
        """Newest wins; at the same instant an opt-out beats an opt-in."""
        at, _, event_id = self.stamp.partition("|")
        return (at, self.status != "granted", event_id)


def stamp_of(event: Envelope) -> str:
    return f"{event.occurred_at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')}|{event.id}"


def statements(event: Envelope) -> list[Statement]:
    payload = event.payload
    if event.type == "identify":
        return _from_traits(payload.get("traits"), stamp_of(event))
    name = payload.get("event")
    if event.type != "track" or not isinstance(name, str):
        return []
    properties = payload.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    stamp = stamp_of(event)
    source = str(properties.get("source") or "event")
    if name == "Consent Updated":
        channel = str(properties.get("channel", "")).lower()
        status = properties.get("status")
        if isinstance(properties.get("granted"), bool):
            status = "granted" if properties["granted"] else "revoked"
        if channel in CHANNELS and status in ("granted", "revoked"):
            return [Statement(channel, status, source, stamp)]
    elif name == "Unsubscribed":
        channel = str(properties.get("channel") or "email").lower()
        if channel in CHANNELS:
            return [
                Statement(channel, "revoked", str(properties.get("source") or "unsubscribe"), stamp)
            ]
    elif name == "Email Marked as Spam":
        return [Statement("email", "suppressed", "complaint", stamp)]
    elif name == "Email Bounced" and str(properties.get("bounce_type", "")).lower() in HARD_BOUNCES:
        return [Statement("email", "suppressed", "hard_bounce", stamp)]
    return []


def _from_traits(traits: object, stamp: str) -> list[Statement]:
    """An identify's ``traits.consent``: ``{"email": true, "line": false}``."""
    given = traits.get("consent") if isinstance(traits, dict) else None
    if not isinstance(given, dict):
        return []
    return [
        Statement(str(channel).lower(), "granted" if flag else "revoked", "traits", stamp)
        for channel, flag in sorted(given.items())
        if isinstance(flag, bool) and str(channel).lower() in CHANNELS
    ]
