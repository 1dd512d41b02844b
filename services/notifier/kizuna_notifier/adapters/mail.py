"""Where mail goes: a real SMTP server (connections reused, a few in parallel), or the local
mailbox table that `make dev` uses when no SMTP server is configured."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna_notifier.domain.email import OutgoingMail

Verdict = Literal["sent", "bounced", "retry", "failed", "deferred"]


@dataclass(frozen=True)
class Result:
    verdict: Verdict
    detail: str = ""
    retry_at: datetime | None = None  # deferred: when the rate limit lets it go


class Mailer(Protocol):
    async def send(self, workspace_id: str, send_id: str, mail: OutgoingMail) -> Result: ...

    async def close(self) -> None: ...


class MailboxMailer:
    """Keeps each mail in ``nt_mailbox`` (one per Message-ID), listed by the API."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def send(self, workspace_id: str, send_id: str, mail: OutgoingMail) -> Result:
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO nt_mailbox (workspace_id, send_id, message_id, recipient,"
                    " subject, raw) VALUES (:ws, :s, :m, :to, :subject, :raw)"
                    " ON CONFLICT (message_id) DO NOTHING"
                ),
                {
                    "ws": workspace_id,
                    "s": send_id,
                    "m": mail.message_id,
                    "to": mail.recipient,
                    "subject": mail.subject,
                    "raw": mail.data,
                },
            )
        return Result("sent", "kept in the local mailbox")

    async def close(self) -> None:
        return None


class SmtpMailer:
    def __init__(self, url: str, connections: int = 4, timeout: float = 30) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("KIZUNA_NOTIFIER_SMTP_URL must look like smtp://user:pass@host:587")
        self.hostname = parts.hostname
        self.port = parts.port or (465 if parts.scheme == "smtps" else 587)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else ""
        self.use_tls = parts.scheme == "smtps"
        self.timeout = timeout
        self.pool: asyncio.Queue[aiosmtplib.SMTP | None] = asyncio.Queue()
        for _ in range(connections):
            self.pool.put_nowait(None)

    async def _connected(self, client: aiosmtplib.SMTP | None) -> aiosmtplib.SMTP:
        if client is not None and client.is_connected:
            return client
        client = aiosmtplib.SMTP(
            hostname=self.hostname, port=self.port, use_tls=self.use_tls, timeout=self.timeout
        )
        await client.connect()  # STARTTLS when the server offers it (aiosmtplib's default)
        if self.username:
            await client.login(self.username, self.password)
        return client

    async def send(self, workspace_id: str, send_id: str, mail: OutgoingMail) -> Result:
        client = await self.pool.get()
        try:
            client = await self._connected(client)
            errors, _ = await client.sendmail(mail.sender, [mail.recipient], mail.data)
            refused = next(iter(errors.values()), None) if errors else None
            if refused is not None:
                return _verdict(refused.code, refused.message)
            return Result("sent")
        except aiosmtplib.SMTPRecipientsRefused as error:
            first = error.recipients[0]
            return _verdict(first.code, first.message)
        except aiosmtplib.SMTPResponseException as error:
            return _verdict(error.code, error.message)
        except (aiosmtplib.SMTPException, OSError) as error:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
            client = None
            return Result("retry", f"{type(error).__name__}: {error}")
        finally:
            self.pool.put_nowait(client)

    async def close(self) -> None:
        while not self.pool.empty():
            client = self.pool.get_nowait()
            if client is not None and client.is_connected:
                with contextlib.suppress(Exception):
                    await client.quit()


def _verdict(code: int, message: str) -> Result:
    detail = f"{code} {message}"[:500]
    return Result("bounced" if 500 <= code < 600 else "retry", detail)
