"""Tracking tokens: only what Kizuna signed, for the kind it signed, before it expires."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kizuna.tracking_tokens import (
    ExpiredToken,
    InvalidToken,
    TrackingToken,
    sign,
    verify,
)

SECRET = "s3cret"


def click_token(**overrides: object) -> TrackingToken:
    fields: dict[str, object] = {
        "kind": "click",
        "workspace_id": "ws_1",
        "customer_id": "cus_1",
        "message_id": "send_1",
        "expires_at": int(time.time()) + 3600,
        "destination": "https://shop.example/sale?x=1",
    }
    fields.update(overrides)
    return TrackingToken(**fields)  # type: ignore[arg-type]


def test_round_trip() -> None:
    token = click_token(asset={"id": "a1"}, delivered_at=123.5)
    assert verify(sign(token, SECRET), "click", SECRET) == token


def test_kind_is_part_of_the_signature() -> None:
    signed = sign(click_token(), SECRET)
    with pytest.raises(InvalidToken):
        verify(signed, "download", SECRET)
    with pytest.raises(InvalidToken):
        verify(signed, "open", SECRET)


def test_other_secret_and_expiry() -> None:
    with pytest.raises(InvalidToken):
        verify(sign(click_token(), SECRET), "click", "other")
    with pytest.raises(ExpiredToken):
        verify(sign(click_token(expires_at=100), SECRET), "click", SECRET)


def test_unsafe_destinations_are_never_signed() -> None:
    for url in ("javascript:alert(1)", "//evil.example", "ftp://x", None):
        with pytest.raises(ValueError, match="destination"):
            sign(click_token(destination=url), SECRET)


@given(position=st.integers(min_value=0), replacement=st.characters(codec="ascii"))
def test_any_single_character_change_is_rejected(position: int, replacement: str) -> None:
    signed = sign(click_token(), SECRET)
    index = position % len(signed)
    tampered = signed[:index] + replacement + signed[index + 1 :]
    if tampered == signed:
        return
    with pytest.raises(InvalidToken):
        verify(tampered, "click", SECRET)


def test_every_spelling_but_the_signed_one_is_rejected() -> None:
    signed = sign(click_token(), SECRET)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.!"
    for index in (0, len(signed) // 2, signed.index(".") - 1, signed.index("."), len(signed) - 1):
        for char in alphabet:
            tampered = signed[:index] + char + signed[index + 1 :]
            if tampered != signed:
                with pytest.raises(InvalidToken):
                    verify(tampered, "click", SECRET)
    for extra in ("=", "!", " ", "A"):
        with pytest.raises(InvalidToken):
            verify(signed + extra, "click", SECRET)


@given(st.text(max_size=300))
def test_arbitrary_text_is_rejected(text: str) -> None:
    with pytest.raises(InvalidToken):
        verify(text, "click", SECRET)
