"""LINE Messaging API push messages: the request built from a rendered template, the retry key
that makes a resend harmless, and what LINE's answer means. Pure.

LINE answers 200 even when the user has blocked the account (nothing is delivered; LINE tells
the account through an ``unfollow`` webhook), and 400 "Failed to send messages" when the user
id does not exist for this channel. That 400 is our "blocked/unreachable": the customer's LINE
channel is suppressed like a hard-bounced address."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from kizuna_notifier.domain.templates import Parts

RETRY_KEYS = uuid.UUID("8d1f0d2e-5a8e-4c55-9f5a-6b8e1c2a4f10")
MAX_MESSAGES = 5
UNREACHABLE = "failed to send messages"


def retry_key(send_id: str) -> str:
    """The same key for every attempt of a send: LINE executes it once and answers 409 after."""
    return str(uuid.uuid5(RETRY_KEYS, send_id))


def messages(parts: Parts) -> list[dict[str, Any]]:
    """The template's message objects, or its text as one text message."""
    if parts.messages:
        return parts.messages[:MAX_MESSAGES]
    if parts.text:
        return [{"type": "text", "text": parts.text}]
    return []


Verdict = Literal["sent", "bounced", "retry", "failed"]


def verdict(status: int, message: str) -> tuple[Verdict, str]:
    """What a push answer means. ``message`` is the ``message`` field of LINE's error body."""
    text = message.strip()
    if 200 <= status < 300:
        return "sent", "accepted by LINE"
    if status == 409:
        return "sent", "accepted by LINE before (same retry key)"
    if status == 429 or status >= 500:
        return "retry", f"LINE {status}: {text}"
    if status == 400 and text.lower().startswith(UNREACHABLE):
        return "bounced", f"LINE {status}: {text} (the user id cannot receive messages)"
    if status == 401:
        return "failed", f"LINE {status}: the channel access token was refused: {text}"
    return "failed", f"LINE {status}: {text}"
