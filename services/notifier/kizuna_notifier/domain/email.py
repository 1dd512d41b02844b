"""An email from rendered parts: text and HTML alternatives, a Message-ID derived from the send
id (a resend after a crash carries the same one), tracked links and an open pixel, and the
RFC 8058 one-click unsubscribe headers on marketing mail. Pure: no I/O."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from email.utils import formataddr, formatdate
from html.parser import HTMLParser

from kizuna import tracking_tokens
from kizuna_notifier.domain import mime
from kizuna_notifier.domain.templates import Parts

LINK = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"']+)\2""", re.IGNORECASE)
TRACKING_DAYS = 90


@dataclass(frozen=True)
class Tracking:
    """Where tracked links point (ingest) and what signs them."""

    base_url: str
    secret: str
    workspace_id: str
    customer_id: str

    def _token(self, kind: tracking_tokens.TokenKind, send_id: str, url: str | None) -> str:
        return tracking_tokens.sign(
            tracking_tokens.TrackingToken(
                kind=kind,
                workspace_id=self.workspace_id,
                customer_id=self.customer_id,
                message_id=send_id,
                expires_at=int(time.time()) + TRACKING_DAYS * 86400,
                destination=url,
                delivered_at=time.time(),
            ),
            self.secret,
        )

    def click_url(self, send_id: str, url: str) -> str:
        return f"{self.base_url}/t/c/{self._token('click', send_id, url)}"

    def pixel_url(self, send_id: str) -> str:
        return f"{self.base_url}/t/o/{self._token('open', send_id, None)}.gif"


def message_id(send_id: str, domain: str) -> str:
    return f"<{hashlib.sha256(send_id.encode()).hexdigest()[:32]}@{domain}>"


class _Text(HTMLParser):
    BREAKS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "table"})

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self.skipping = 0
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head"):
            self.skipping += 1
        if tag in self.BREAKS:
            self.chunks.append("\n")
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self._href = href

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head"):
            self.skipping = max(0, self.skipping - 1)
        if tag == "a" and self._href:
            self.chunks.append(f" ({self._href})")
            self._href = None

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.chunks.append(data)


def text_from_html(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    text = "".join(parser.chunks)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def track_links(html: str, send_id: str, tracking: Tracking, keep: frozenset[str]) -> str:
    def rewrite(match: re.Match[str]) -> str:
        url = match.group(3)
        if url in keep:
            return match.group(0)
        return f"{match.group(1)}{match.group(2)}{tracking.click_url(send_id, url)}{match.group(2)}"

    tracked = LINK.sub(rewrite, html)
    pixel = f'<img src="{tracking.pixel_url(send_id)}" width="1" height="1" alt="">'
    if "</body>" in tracked:
        return tracked.replace("</body>", f"{pixel}</body>", 1)
    return tracked + pixel


@dataclass(frozen=True)
class Envelope:
    sender_name: str
    sender_address: str
    recipient: str
    domain: str


@dataclass(frozen=True)
class OutgoingMail:
    """A mail ready for SMTP: ``data`` is the whole message, CRLF line endings."""

    message_id: str
    sender: str  # the envelope sender (MAIL FROM)
    recipient: str
    subject: str
    data: bytes


def build(
    parts: Parts,
    envelope: Envelope,
    send_id: str,
    *,
    marketing: bool,
    tracking: Tracking | None,
    unsubscribe_url: str | None,
    one_click_url: str | None,
) -> OutgoingMail:
    html = parts.html
    text = parts.text or (text_from_html(html) if html else "")
    if marketing and unsubscribe_url:
        text = f"{text.rstrip()}\n\nUnsubscribe: {unsubscribe_url}\n"
    if html is not None:
        keep = frozenset(u for u in (unsubscribe_url, one_click_url) if u)
        if tracking is not None:
            html = track_links(html, send_id, tracking, keep)
    subject = " ".join((parts.subject or "").splitlines()).strip()
    identifier = message_id(send_id, envelope.domain)
    headers = [
        ("Subject", subject),
        ("From", formataddr((envelope.sender_name, envelope.sender_address), "utf-8")),
        ("To", envelope.recipient),
        ("Date", formatdate(localtime=False)),
        ("Message-ID", identifier),
        ("X-Kizuna-Send-Id", send_id),
    ]
    if marketing and one_click_url:
        headers.append(("List-Unsubscribe", f"<{one_click_url}>"))
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return OutgoingMail(
        identifier,
        envelope.sender_address,
        envelope.recipient,
        subject,
        mime.message(headers, text, html),
    )
