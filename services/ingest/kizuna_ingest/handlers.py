"""Use cases of the ingest service; dependencies are passed in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from kizuna.envelope import Envelope
from kizuna_ingest.domain.calls import to_envelope
from kizuna_ingest.domain.errors import InvalidCall, Problem, TooLarge

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500
MAX_BATCH_DEFAULTS_BYTES = 8 * 1024  # batch-level context/integrations are copied to every item
NUL = b"\\u0000"

Publish = Callable[[Sequence[Envelope]], Awaitable[None]]


@dataclass
class Outcome:
    accepted: list[Envelope] = field(default_factory=list)
    rejected: list[Problem] = field(default_factory=list)


def check_encodable(item: Any) -> None:
    """Rejects what JSON storage downstream cannot hold, and oversized events."""
    try:
        encoded = orjson.dumps(item)
    except orjson.JSONEncodeError as error:
        raise InvalidCall("(event)", "cannot be stored: nested too deeply") from error
    if len(encoded) > MAX_EVENT_BYTES:
        raise InvalidCall("(event)", f"is larger than {MAX_EVENT_BYTES // 1024} KB")
    if NUL in encoded:
        raise InvalidCall("(event)", "must not contain NUL characters (\\u0000)")


async def accept_call(
    call: Any, call_type: str, workspace_id: str, received_at: datetime, publish: Publish
) -> Envelope:
    check_encodable(call)
    envelope = to_envelope(call, call_type, workspace_id, received_at)
    await publish([envelope])
    return envelope


def batch_defaults(body: dict[str, Any]) -> dict[str, Any]:
    for name in ("context", "integrations"):
        if body.get(name) is not None:
            if not isinstance(body[name], dict):
                raise InvalidCall(name, "must be an object")
            check_encodable(body[name])
            if len(orjson.dumps(body[name])) > MAX_BATCH_DEFAULTS_BYTES:
                raise InvalidCall(name, f"is larger than {MAX_BATCH_DEFAULTS_BYTES // 1024} KB")
    return {name: body[name] for name in ("context", "integrations", "sentAt") if body.get(name)}


async def accept_batch(
    body: Any, workspace_id: str, received_at: datetime, publish: Publish
) -> Outcome:
    """Keeps every valid item, reports each invalid one with its index and reason."""
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        raise InvalidCall("batch", "must be a list of calls")
    items: list[Any] = body["batch"]
    if len(items) > MAX_BATCH_EVENTS:
        raise TooLarge(f"a batch holds at most {MAX_BATCH_EVENTS} events")
    defaults = batch_defaults(body)
    outcome = Outcome()
    for index, item in enumerate(items):
        try:
            check_encodable(item)
            if isinstance(item, dict) and "sentAt" not in item and "sentAt" in defaults:
                item = {**item, "sentAt": defaults["sentAt"]}
            outcome.accepted.append(to_envelope(item, None, workspace_id, received_at, defaults))
        except InvalidCall as error:
            outcome.rejected.append(error.detail.at(index))
    if outcome.accepted:
        await publish(outcome.accepted)
    return outcome
