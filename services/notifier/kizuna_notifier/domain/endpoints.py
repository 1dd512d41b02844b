"""Integration webhook endpoints as the API takes them, and their signing secrets. Pure."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kizuna_notifier.domain.integrations import EVENT_TYPES

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
DEFAULT_OVERLAP = timedelta(hours=24)


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL")
    return value


def _event_types(value: list[str]) -> list[str]:
    unknown = sorted(set(value) - set(EVENT_TYPES) - {"*"})
    if unknown:
        raise ValueError(f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}")
    return sorted(set(value))


def _secret(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(value[len(SECRET_PREFIX) :], validate=True)
    except ValueError as error:
        raise ValueError("must be whsec_ followed by base64") from error
    if not 24 <= len(key) <= 64:
        raise ValueError("the key must be 24 to 64 bytes")
    return value


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000)
    event_types: list[str] = Field(min_length=1, max_length=len(EVENT_TYPES) + 1)
    description: str = Field(default="", max_length=500)
    enabled: bool = True
    secret: str | None = Field(default=None, description="whsec_…; made for you if left out")

    _check_url = field_validator("url")(_url)
    _check_types = field_validator("event_types")(_event_types)
    _check_secret = field_validator("secret")(_secret)


class EndpointChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2000)
    event_types: list[str] | None = Field(
        default=None, min_length=1, max_length=len(EVENT_TYPES) + 1
    )
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else _url(value)

    @field_validator("event_types")
    @classmethod
    def _check_types(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _event_types(value)


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secret: str | None = None
    overlap_seconds: int = Field(default=int(DEFAULT_OVERLAP.total_seconds()), ge=0, le=7 * 86400)

    _check_secret = field_validator("secret")(_secret)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def rotated(
    current: list[dict[str, Any]], fresh: str, now: datetime, overlap: timedelta
) -> list[dict[str, Any]]:
    """The new secret first; the ones still valid keep signing until ``now + overlap``."""
    kept = [
        {"secret": s["secret"], "expires_at": min_time(s.get("expires_at"), now + overlap)}
        for s in active(current, now)
    ]
    if overlap <= timedelta(0):
        kept = []
    return [{"secret": fresh, "expires_at": None}, *kept]


def active(stored: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    return [
        s
        for s in stored
        if s.get("expires_at") is None or datetime.fromisoformat(s["expires_at"]) > now
    ]


def min_time(stored: str | None, limit: datetime) -> str:
    if stored is not None and datetime.fromisoformat(stored) < limit:
        return stored
    return limit.isoformat()
