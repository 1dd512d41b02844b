"""Webhook deliveries: a signed POST (Standard Webhooks), no redirects followed, and no
destination in a private, loopback or link-local range unless the allow-list names it."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from kizuna_notifier.adapters.mail import Result

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
RETRYABLE = frozenset({408, 425, 429})
RESOLVED_SECONDS = 30.0
EXCERPT = 500


def parse_networks(text: str) -> list[Network]:
    return [
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    ]


def signed_headers(
    secret: str | Sequence[str], message_id: str, at: datetime, body: str
) -> dict[str, str]:
    """Standard Webhooks headers; with several secrets (a rotation's overlap) one signature
    each, space-separated, so a receiver holding either verifies."""
    keys = [secret] if isinstance(secret, str) else list(secret)
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(_signer(key).sign(message_id, at, body) for key in keys),
        "user-agent": "Kizuna-Webhooks/1",
    }


@functools.lru_cache(maxsize=1024)
def _signer(secret: str) -> Webhook:
    return Webhook(secret)


@dataclass(frozen=True)
class Attempt:
    status: int | None  # None: no answer (refused destination, network error, timeout)
    latency_ms: int
    response: str  # an excerpt of the answer's body
    error: str | None
    retry_after: str | None


class WebhookPoster:
    def __init__(
        self, allowed: Sequence[Network] = (), timeout: float = 10, connections: int = 100
    ) -> None:
        self.allowed = list(allowed)
        self.client = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        self._checked: dict[tuple[str, int], tuple[float, str | None]] = {}

    async def refusal(self, url: str) -> str | None:
        """Why ``url`` may not be posted to, or None; a host's answer is kept a little while."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "not an http(s) URL"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key = (parts.hostname, port)
        now = time.monotonic()
        cached = self._checked.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        refusal = await self._check(parts.hostname, port)
        self._checked[key] = (now + RESOLVED_SECONDS, refusal)
        return refusal

    async def _check(self, hostname: str, port: int) -> str | None:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                hostname, port, type=socket.SOCK_STREAM
            )
        except OSError as error:
            return f"cannot resolve {hostname}: {error}"
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if any(address in network for network in self.allowed):
                continue
            if not address.is_global:
                return f"{hostname} is a private, loopback or link-local address"
        return None

    async def attempt(self, url: str, body: str, headers: dict[str, str]) -> Attempt:
        refusal = await self.refusal(url)
        if refusal is not None:
            return Attempt(None, 0, "", f"destination refused: {refusal}", None)
        started = time.monotonic()
        try:
            response = await self.client.post(url, content=body.encode(), headers=headers)
        except httpx.HTTPError as error:
            latency = int((time.monotonic() - started) * 1000)
            return Attempt(None, latency, "", f"{type(error).__name__}: {error}"[:500], None)
        latency = int((time.monotonic() - started) * 1000)
        return Attempt(
            response.status_code,
            latency,
            response.text[:EXCERPT],
            None,
            response.headers.get("retry-after"),
        )

    async def post(self, url: str, body: str, headers: dict[str, str]) -> Result:
        """The journey's webhook step: what the answer means for the send."""
        answer = await self.attempt(url, body, headers)
        if answer.status is None:
            if answer.error and answer.error.startswith("destination refused"):
                return Result("failed", answer.error)
            return Result("retry", answer.error or "")
        detail = f"{answer.status} {answer.response[:200]}"
        if 200 <= answer.status < 300:
            return Result("sent", detail)
        if answer.status >= 500 or answer.status in RETRYABLE:
            return Result("retry", detail)
        return Result("failed", detail)  # redirects and other 4xx are failures

    async def close(self) -> None:
        await self.client.aclose()
