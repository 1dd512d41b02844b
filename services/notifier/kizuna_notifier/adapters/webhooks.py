"""Webhook deliveries: a signed POST (Standard Webhooks), no redirects followed, and no
destination in a private, loopback or link-local range unless the allow-list names it."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlsplit

import httpx
from standardwebhooks.webhooks import Webhook

from kizuna_notifier.adapters.mail import Result

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
RETRYABLE = frozenset({408, 425, 429})


def parse_networks(text: str) -> list[Network]:
    return [
        ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()
    ]


def signed_headers(secret: str, message_id: str, at: datetime, body: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
        "user-agent": "Kizuna-Webhooks/1",
    }


class WebhookPoster:
    def __init__(self, allowed: Sequence[Network] = (), timeout: float = 10) -> None:
        self.allowed = list(allowed)
        self.client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def _refusal(self, url: str) -> str | None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "not an http(s) URL"
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                parts.hostname,
                parts.port or (443 if parts.scheme == "https" else 80),
                type=socket.SOCK_STREAM,
            )
        except OSError as error:
            return f"cannot resolve {parts.hostname}: {error}"
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if any(address in network for network in self.allowed):
                continue
            if not address.is_global:
                return f"{parts.hostname} is a private, loopback or link-local address"
        return None

    async def post(self, url: str, body: str, headers: dict[str, str]) -> Result:
        refusal = await self._refusal(url)
        if refusal is not None:
            return Result("failed", f"destination refused: {refusal}")
        try:
            response = await self.client.post(url, content=body.encode(), headers=headers)
        except httpx.HTTPError as error:
            return Result("retry", f"{type(error).__name__}: {error}"[:500])
        detail = f"{response.status_code} {response.text[:200]}"
        if 200 <= response.status_code < 300:
            return Result("sent", detail)
        if response.status_code >= 500 or response.status_code in RETRYABLE:
            return Result("retry", detail)
        return Result("failed", detail)  # redirects and other 4xx are failures

    async def close(self) -> None:
        await self.client.aclose()
