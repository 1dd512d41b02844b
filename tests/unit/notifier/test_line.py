from __future__ import annotations

import pytest

from kizuna_notifier.domain import line
from kizuna_notifier.domain.templates import Parts


def test_the_retry_key_is_a_stable_uuid_per_send() -> None:
    assert line.retry_key("send:r1:s:1") == line.retry_key("send:r1:s:1")
    assert line.retry_key("send:r1:s:1") != line.retry_key("send:r1:s:2")
    assert len(line.retry_key("x")) == 36


def test_text_becomes_one_text_message_and_rich_messages_pass_as_they_are() -> None:
    assert line.messages(Parts(text="Hi")) == [{"type": "text", "text": "Hi"}]
    rich = [{"type": "sticker", "packageId": "1", "stickerId": "1"}] * 7
    assert line.messages(Parts(text="Hi", messages=rich[:5])) == rich[:5]
    assert line.messages(Parts()) == []


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (200, "", "sent"),
        (409, "The retry key is already accepted", "sent"),
        (429, "You have reached your monthly limit.", "retry"),
        (500, "", "retry"),
        (503, "", "retry"),
        (400, "Failed to send messages", "bounced"),
        (400, "The request body has 1 error(s)", "failed"),
        (401, "Authentication failed", "failed"),
        (403, "Access to this API is not available for your account", "failed"),
    ],
)
def test_line_answers_map_to_sent_retry_bounce_or_failure(
    status: int, message: str, expected: str
) -> None:
    assert line.verdict(status, message)[0] == expected
