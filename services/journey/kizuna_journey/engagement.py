"""What happened to journey messages after they were sent, for results: the notifier's
delivery outcomes, and opens, clicks and unsubscribes that name the send in
``properties.message_id``. The first of each kind per message is kept."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna.envelope import Envelope

OUTCOMES = {
    "delivery.delivered": "delivered",
    "delivery.bounced": "bounced",
    "delivery.failed": "failed",
    "delivery.complained": "complained",
}
TRACKED = {
    "Email Opened": "opened",
    "Email Link Clicked": "clicked",
    "Unsubscribed": "unsubscribed",
}
SEND_PREFIX = "send:"
# Every event's name or type is in its encoded bytes as is (the envelope encoder escapes no
# ASCII): an event without any of these is none of the above and need not be decoded.
MARKERS = (b"delivery.", *(name.encode() for name in TRACKED))


def may_matter(raw: bytes) -> bool:
    return any(marker in raw for marker in MARKERS)


def facts(event: Envelope) -> tuple[str, str] | None:
    """(send id, kind) for an event about a journey message, else None."""
    payload = event.payload
    if event.type in OUTCOMES:
        send_id = payload.get("send_id")
        kind = OUTCOMES[event.type]
    elif event.type == "track" and payload.get("event") in TRACKED:
        send_id = (payload.get("properties") or {}).get("message_id")
        kind = TRACKED[str(payload["event"])]
    else:
        return None
    if not isinstance(send_id, str) or not send_id.startswith(SEND_PREFIX):
        return None
    return send_id, kind


async def record(engine: AsyncEngine, events: Sequence[Envelope]) -> int:
    rows = {
        (event.workspace_id, *found): event.occurred_at
        for event in events
        if (found := facts(event)) is not None
    }
    if not rows:
        return 0
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO jr_message_events (workspace_id, send_id, kind, at)"
                " SELECT * FROM unnest(CAST(:ws AS text[]), CAST(:s AS text[]),"
                " CAST(:k AS text[]), CAST(:at AS timestamptz[]))"
                " ON CONFLICT (workspace_id, send_id, kind) DO UPDATE SET at = least("
                "jr_message_events.at, excluded.at)"
            ),
            {
                "ws": [key[0] for key in rows],
                "s": [key[1] for key in rows],
                "k": [key[2] for key in rows],
                "at": list(rows.values()),
            },
        )
    return len(rows)
