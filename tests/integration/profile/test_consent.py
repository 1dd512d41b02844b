"""Consent precedence: the newest statement by event time wins, an opt-out wins a tie,
bounces and complaints stick, and a merge follows the same rules (ADR 0005)."""

from __future__ import annotations

from typing import Any

from tests.integration.profile.conftest import Profiles, raw, track


def consent(channel: str, status: str, **kw: Any) -> Any:
    return track("Consent Updated", {"channel": channel, "status": status, "source": "form"}, **kw)


async def record_of(profiles: Profiles, user_id: str) -> dict[str, Any]:
    row = await profiles.row(await profiles.customer_of("user_id", user_id))
    record: dict[str, Any] = row["record"]
    return record


async def test_newest_statement_wins_whatever_the_arrival_order(profiles: Profiles) -> None:
    await profiles.feed(consent("email", "granted", user_id="c1", at=10))
    await profiles.feed(consent("email", "revoked", user_id="c1", at=5))  # older: loses
    assert (await record_of(profiles, "c1"))["consent"]["email"][0] == "granted"
    await profiles.feed(track("Unsubscribed", {}, user_id="c1", at=20))
    consent_now = (await record_of(profiles, "c1"))["consent"]["email"]
    assert consent_now[:2] == ["revoked", "unsubscribe"]


async def test_an_opt_out_wins_a_tie(profiles: Profiles) -> None:
    await profiles.feed(
        consent("line", "granted", user_id="c2", at=3, message_id="z-late-id"),
        consent("line", "revoked", user_id="c2", at=3, message_id="a-early-id"),
    )
    assert (await record_of(profiles, "c2"))["consent"]["line"][0] == "revoked"


async def test_merge_keeps_the_newest_statement_and_every_suppression(profiles: Profiles) -> None:
    await profiles.feed(
        consent("email", "revoked", anonymous_id="browser", at=1),
        track("Email Marked as Spam", {}, anonymous_id="browser", at=2),
        consent("email", "granted", user_id="c3", at=8),
        consent("sms", "granted", user_id="c3", at=1),
        consent("sms", "revoked", anonymous_id="browser", at=9),
        track("Email Bounced", {"bounce_type": "soft"}, user_id="c3", at=3),
    )
    await profiles.feed(raw("identify", user_id="c3", anonymous_id="browser", at=10))
    merged = await record_of(profiles, "c3")
    assert merged["consent"]["email"][0] == "granted", "the known user's later opt-in is newer"
    assert merged["consent"]["sms"][0] == "revoked", "the browser's later opt-out is newer"
    assert set(merged["suppressions"]) == {"email:complaint"}, (
        "complaints stick; soft bounces don't"
    )
