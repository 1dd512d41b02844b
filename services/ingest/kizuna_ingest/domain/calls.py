"""Turns one Segment-spec call (track, identify, page, screen, group, alias) into an envelope.

Pure: no I/O. The caller supplies the workspace, the receive time and batch-level defaults.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from kizuna.envelope import Envelope
from kizuna_ingest.domain import ecommerce
from kizuna_ingest.domain.errors import InvalidCall

CALL_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})
SHORT_PATHS = {
    "t": "track",
    "i": "identify",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
}
MAX_ID_LENGTH = 400
MAX_EXACT_FLOAT = 2**53
OBJECT_FIELDS = ("properties", "traits", "context", "integrations")
LATEST_ACCEPTED = timedelta(days=1)  # later than this after receipt: a broken client clock


def _identity(call: dict[str, Any], name: str) -> str | None:
    value = call.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_EXACT_FLOAT:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidCall(name, "must be a string")
    text = str(value)
    if len(text) > MAX_ID_LENGTH:
        raise InvalidCall(name, f"must be at most {MAX_ID_LENGTH} characters")
    if not text.isprintable():
        raise InvalidCall(name, "must not contain control characters")
    return text


def parse_time(value: Any, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidCall(field, "must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as error:
        raise InvalidCall(field, "must be an ISO 8601 date-time string") from error
    if parsed.tzinfo is None:
        raise InvalidCall(field, "must include a time zone (e.g. Z or +09:00)")
    try:
        return parsed.astimezone(UTC)
    except OverflowError as error:
        raise InvalidCall(field, "is out of range") from error


def event_time(call: dict[str, Any], received_at: datetime) -> tuple[datetime, datetime | None]:
    """Corrects the client's clock skew the way Segment does:
    timestamp = receivedAt - (sentAt - originalTimestamp). Returns (timestamp, original)."""
    original = parse_time(call.get("originalTimestamp"), "originalTimestamp") or parse_time(
        call.get("timestamp"), "timestamp"
    )
    sent_at = parse_time(call.get("sentAt"), "sentAt")
    if original is not None and sent_at is not None:
        try:
            timestamp = received_at - (sent_at - original)
        except OverflowError as error:
            raise InvalidCall("sentAt", "is implausibly far from the event's timestamp") from error
    else:
        timestamp = original or received_at
    if timestamp > received_at + LATEST_ACCEPTED:
        timestamp = received_at
    return timestamp, original


def _check_objects(call: dict[str, Any]) -> None:
    for name in OBJECT_FIELDS:
        if call.get(name) is not None and not isinstance(call[name], dict):
            raise InvalidCall(name, "must be an object")


def _check_type_fields(call_type: str, call: dict[str, Any]) -> None:
    if call_type == "track":
        event = call.get("event")
        if not isinstance(event, str) or not event.strip():
            raise InvalidCall("event", "is required for track")
        ecommerce.validate(event, call.get("properties") or {})
    elif call_type == "alias":
        if _identity(call, "previousId") is None:
            raise InvalidCall("previousId", "is required for alias")
        if _identity(call, "userId") is None:
            raise InvalidCall("userId", "is required for alias")
    elif call_type == "group" and _identity(call, "groupId") is None:
        raise InvalidCall("groupId", "is required for group")
    for name in ("name", "event"):
        if call.get(name) is not None and not isinstance(call[name], str):
            raise InvalidCall(name, "must be a string")


def derived_message_id(workspace_id: str, call: dict[str, Any]) -> str:
    """A call sent without messageId gets an id from its content, so a retry of the same body
    is recognised as the same event."""
    canonical = orjson.dumps(call, option=orjson.OPT_SORT_KEYS)
    return "kz-" + hashlib.sha256(workspace_id.encode() + b"\0" + canonical).hexdigest()[:32]


def to_envelope(
    call: Any,
    call_type: str | None,
    workspace_id: str,
    received_at: datetime,
    defaults: dict[str, Any] | None = None,
) -> Envelope:
    """``call_type`` comes from the path; None means take it from the call (batch items)."""
    if not isinstance(call, dict):
        raise InvalidCall("(body)", "must be a JSON object")
    declared = call.get("type")
    call_type = call_type or declared
    if not isinstance(call_type, str) or call_type not in CALL_TYPES:
        raise InvalidCall("type", f"must be one of {', '.join(sorted(CALL_TYPES))}")
    _check_objects(call)
    user_id = _identity(call, "userId")
    anonymous_id = _identity(call, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise InvalidCall("userId", "userId or anonymousId is required")
    _check_type_fields(call_type, call)
    timestamp, original = event_time(call, received_at)

    payload = {k: v for k, v in call.items() if k != "writeKey"}
    for name in ("context", "integrations"):
        if defaults and defaults.get(name):
            payload[name] = {**defaults[name], **(call.get(name) or {})}
    message_id = _identity(call, "messageId") or derived_message_id(workspace_id, call)
    payload.update(
        type=call_type,
        messageId=message_id,
        timestamp=timestamp.isoformat(),
        receivedAt=received_at.isoformat(),
    )
    if original is not None:
        payload["originalTimestamp"] = original.isoformat()
    return Envelope(
        id=message_id,
        type=call_type,
        workspace_id=workspace_id,
        customer_key=user_id or anonymous_id or "",
        occurred_at=timestamp,
        received_at=received_at,
        payload=payload,
    )
