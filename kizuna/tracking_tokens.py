"""Signed tracking tokens carried by mail-open pixels, tracked links and download links.

The notifier signs them; ingest verifies them. Format: ``base64url(json) "." base64url(mac)``
where mac = HMAC-SHA256(secret, kind ":" json). The kind is inside the MAC, so a pixel token
can never be replayed as a redirect.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

TokenKind = Literal["open", "click", "download", "unsubscribe"]
WITHOUT_DESTINATION = frozenset({"open", "unsubscribe"})
MAX_TOKEN_LENGTH = 4096


class InvalidToken(Exception):
    """Malformed, unsigned or tampered."""


class ExpiredToken(Exception):
    pass


@dataclass(frozen=True)
class TrackingToken:
    kind: TokenKind
    workspace_id: str
    customer_id: str
    message_id: str
    expires_at: int
    destination: str | None = None
    delivered_at: float | None = None
    asset: dict[str, str] = field(default_factory=dict)

    def claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "w": self.workspace_id,
            "c": self.customer_id,
            "m": self.message_id,
            "e": self.expires_at,
        }
        if self.destination is not None:
            claims["u"] = self.destination
        if self.delivered_at is not None:
            claims["d"] = self.delivered_at
        if self.asset:
            claims["a"] = self.asset
        return claims


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, kind: str, body: bytes) -> bytes:
    return hmac.new(secret, kind.encode() + b":" + body, hashlib.sha256).digest()


def is_safe_destination(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def sign(token: TrackingToken, secret: str) -> str:
    if token.kind not in WITHOUT_DESTINATION and not (
        token.destination and is_safe_destination(token.destination)
    ):
        raise ValueError("click and download tokens need an http(s) destination")
    body = json.dumps(token.claims(), separators=(",", ":"), sort_keys=True).encode()
    return f"{_b64encode(body)}.{_b64encode(_mac(secret.encode(), token.kind, body))}"


def verify(text: str, kind: TokenKind, secret: str, now: float | None = None) -> TrackingToken:
    if len(text) > MAX_TOKEN_LENGTH or text.count(".") != 1:
        raise InvalidToken("not a tracking token")
    body_part, mac_part = text.split(".")
    try:
        body, mac = _b64decode(body_part), _b64decode(mac_part)
    except ValueError as error:
        raise InvalidToken("not a tracking token") from error
    if _b64encode(body) != body_part or _b64encode(mac) != mac_part:
        raise InvalidToken("not in canonical form")  # one token, one spelling
    if not hmac.compare_digest(mac, _mac(secret.encode(), kind, body)):
        raise InvalidToken("bad signature")
    claims = json.loads(body)  # signed by us, so well-formed
    if claims["e"] < (time.time() if now is None else now):
        raise ExpiredToken("the link has expired")
    destination = claims.get("u")
    if kind not in WITHOUT_DESTINATION and not (
        isinstance(destination, str) and is_safe_destination(destination)
    ):
        raise InvalidToken("no safe destination")
    return TrackingToken(
        kind=kind,
        workspace_id=claims["w"],
        customer_id=claims["c"],
        message_id=claims["m"],
        expires_at=claims["e"],
        destination=destination,
        delivered_at=claims.get("d"),
        asset=claims.get("a", {}),
    )
