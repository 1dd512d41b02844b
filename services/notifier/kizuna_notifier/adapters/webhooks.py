"""Webhook deliveries: a signed POST (Standard Webhooks), no redirects followed, and no
destination in a private, loopback or link-local range unless the allow-list names it.

The range check is made twice: by ``refusal`` before posting (a clear reason), and by the
resolver the connection itself uses, so a name that resolves elsewhere between the two (DNS
rebinding) is still refused. An IP literal is not resolved; ``refusal`` has checked it."""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks.webhooks import Webhook

from kizuna_notifier.adapters.mail import Result

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
RETRYABLE = frozenset({408, 425, 429})
RESOLVED_SECONDS = 30.0
CHECKED_URLS = 10_000  # answers kept before the stale ones are dropped
EXCERPT = 500
READ_BYTES = 4 * EXCERPT  # of an answer's body at most; a longer one's connection is dropped


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


class DestinationRefused(OSError):
    def __init__(self, reason: str) -> None:
        super().__init__(errno.EACCES, reason)
        self.reason = reason


def _refused(address: str, allowed: Sequence[Network]) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return not ip.is_global and not any(ip in network for network in allowed)


class GuardedResolver(AbstractResolver):
    """What the connection resolves a name to, refused as a whole when any address of it is
    in a private, loopback or link-local range the allow-list does not name."""

    def __init__(self, allowed: Sequence[Network]) -> None:
        self.allowed = list(allowed)
        self.inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        if any(_refused(result["host"], self.allowed) for result in found):
            raise DestinationRefused(f"{host} is a private, loopback or link-local address")
        return found

    async def close(self) -> None:
        await self.inner.close()


class WebhookPoster:
    def __init__(
        self, allowed: Sequence[Network] = (), timeout: float = 10, connections: int = 100
    ) -> None:
        self.allowed = list(allowed)
        self.timeout = timeout
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None
        self._checked: dict[str, tuple[float, str | None]] = {}  # url → (until, refusal)

    def _client(self) -> aiohttp.ClientSession:
        """Made on first use, inside the running loop (the poster may be built outside one)."""
        if self._session is None:
            self._resolver = GuardedResolver(self.allowed)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self.connections,
                    resolver=self._resolver,
                    ttl_dns_cache=int(RESOLVED_SECONDS),
                ),
                # per step, as before: getting a connection, and each wait for the answer
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self.timeout, sock_read=self.timeout
                ),
                cookie_jar=aiohttp.DummyCookieJar(),  # nothing carried between endpoints
            )
        return self._session

    async def refusal(self, url: str) -> str | None:
        """Why ``url`` may not be posted to, or None; the answer is kept a little while."""
        now = time.monotonic()
        cached = self._checked.get(url)
        if cached is not None and cached[0] > now:
            return cached[1]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "not an http(s) URL"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        refusal = await self._check(parts.hostname, port)
        if len(self._checked) >= CHECKED_URLS:
            self._checked = {u: c for u, c in self._checked.items() if c[0] > now}
        self._checked[url] = (now + RESOLVED_SECONDS, refusal)
        return refusal

    async def _check(self, hostname: str, port: int) -> str | None:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                hostname, port, type=socket.SOCK_STREAM
            )
        except OSError as error:
            return f"cannot resolve {hostname}: {error}"
        if any(_refused(str(info[4][0]), self.allowed) for info in infos):
            return f"{hostname} is a private, loopback or link-local address"
        return None

    async def attempt(self, url: str, body: str, headers: dict[str, str]) -> Attempt:
        refusal = await self.refusal(url)
        if refusal is not None:
            return Attempt(None, 0, "", f"destination refused: {refusal}", None)
        started = time.monotonic()
        try:
            async with self._client().post(
                url, data=body.encode(), headers=headers, allow_redirects=False
            ) as response:
                excerpt = await _excerpt(response)
                status, retry_after = response.status, response.headers.get("retry-after")
        except (aiohttp.ClientError, TimeoutError) as error:
            latency = int((time.monotonic() - started) * 1000)
            if isinstance(error, aiohttp.ClientConnectorError) and isinstance(
                error.os_error, DestinationRefused
            ):
                reason = f"destination refused: {error.os_error.reason}"
                return Attempt(None, latency, "", reason, None)
            return Attempt(None, latency, "", f"{type(error).__name__}: {error}"[:500], None)
        latency = int((time.monotonic() - started) * 1000)
        return Attempt(status, latency, excerpt, None, retry_after)

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
        session, resolver = self._session, self._resolver
        self._session = self._resolver = None
        if session is not None:
            await session.close()
        if resolver is not None:
            await resolver.close()


async def _excerpt(response: aiohttp.ClientResponse) -> str:
    """The start of the answer's body as text; the rest is not read."""
    data = b""
    while len(data) < READ_BYTES and not response.content.at_eof():
        data += await response.content.read(READ_BYTES - len(data))
    try:
        return data.decode(response.charset or "utf-8", "replace")[:EXCERPT]
    except LookupError:
        return data.decode("utf-8", "replace")[:EXCERPT]
