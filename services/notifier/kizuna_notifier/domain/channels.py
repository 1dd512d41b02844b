"""A workspace's settings per channel: its sender address, its LINE channel access token, its
rate limits. Stored as JSON; what is left out falls back to the service's defaults. Pure."""

from __future__ import annotations

from email.utils import parseaddr
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ChannelName = Literal["email", "line", "webhook"]
CHANNELS: tuple[ChannelName, ...] = ("email", "line", "webhook")
MAX_RATE = 100_000


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate_per_second: float | None = Field(default=None, gt=0, le=MAX_RATE)
    burst: int | None = Field(
        default=None, ge=1, le=MAX_RATE, description="Sends at once; default: one second's worth"
    )


class EmailChannel(Limits):
    sender: str | None = Field(
        default=None,
        alias="from",
        max_length=320,
        description='The workspace\'s sender, e.g. "Sakura Tea <news@sakura-tea.jp>"',
    )

    @field_validator("sender")
    @classmethod
    def _an_address(cls, value: str | None) -> str | None:
        if value is not None and "@" not in parseaddr(value)[1]:
            raise ValueError("must be an address such as 'Shop <news@shop.example>'")
        return value


class LineChannel(Limits):
    access_token: str | None = Field(default=None, min_length=1, max_length=2000)


class WebhookChannel(Limits):
    pass


MODELS: dict[str, type[Limits]] = {
    "email": EmailChannel,
    "line": LineChannel,
    "webhook": WebhookChannel,
}


def shown(channel: str, config: dict[str, Any]) -> dict[str, Any]:
    """What the API shows: the LINE token never leaves, only its last four characters."""
    visible = dict(config)
    token = visible.pop("access_token", None)
    if channel == "line":
        visible["access_token_set"] = token is not None
        if token:
            visible["access_token_hint"] = "…" + str(token)[-4:]
    return visible


def rate(config: dict[str, Any], default_per_second: float) -> tuple[float, int]:
    """(sends per second, burst) for a channel of one workspace."""
    per_second = float(config.get("rate_per_second") or default_per_second)
    burst = int(config.get("burst") or max(1, round(per_second)))
    return per_second, burst
