"""Unsubscribing without cookies or login: RFC 8058 one-click (``POST /u/{token}/one-click``,
answered without a redirect) and a hosted preference page (``GET /u/{token}``) where the
customer leaves single topics or everything. Each change is recorded at once in the consent
mirror and published as an event (``Unsubscribed`` or ``Subscription Group Updated``) so profile
keeps it on the customer's timeline."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna import consent, topics, tracking_tokens
from kizuna.envelope import Envelope
from kizuna_notifier.adapters import store
from kizuna_notifier.delivery import Delivery

router = APIRouter(tags=["unsubscribe"])

WORDS = {
    "en": {
        "title": "Email preferences",
        "lead": "Choose what you would like to stop receiving.",
        "all": "Unsubscribe from all marketing email",
        "save": "Save",
        "done": "Your preferences are saved.",
    },
    "ja": {
        "title": "メール配信設定",
        "lead": "受け取りを停止する内容を選んでください。",
        "all": "すべてのお知らせメールの配信を停止する",
        "save": "保存",
        "done": "配信設定を保存しました。",
    },
}


def _verify(request: Request, token: str) -> tracking_tokens.TrackingToken:
    delivery: Delivery = request.app.state.delivery
    try:
        return tracking_tokens.verify(
            token, "unsubscribe", delivery.settings.secret_key.get_secret_value()
        )
    except (tracking_tokens.InvalidToken, tracking_tokens.ExpiredToken) as error:
        raise HTTPException(404, f"this link is not valid: {error}") from error


def _language(request: Request) -> str:
    accepted = request.headers.get("accept-language", "").lower()
    return "ja" if accepted.startswith("ja") else "en"


async def _topics(conn: AsyncConnection, workspace_id: str) -> list[str]:
    rows = await conn.execute(
        sa.text(
            "SELECT DISTINCT body->>'topic' AS topic FROM nt_templates WHERE workspace_id = :ws"
            " AND body ? 'topic' ORDER BY 1"
        ),
        {"ws": workspace_id},
    )
    return [row.topic for row in rows.all()]


async def _leave(
    delivery: Delivery,
    token: tracking_tokens.TrackingToken,
    left: list[str | None],
    source: str,
) -> None:
    """``None`` in ``left`` is every marketing email; a string is one topic."""
    now: datetime = delivery.clock()
    stamp_time = now.strftime("%Y-%m-%dT%H:%M:%S.%f")
    events = []
    async with delivery.engine.begin() as conn:
        for topic in left:
            channel = "email" if topic is None else f"email/{topic}"
            event_id = f"unsubscribe:{token.message_id}:{channel}"
            await store.record_consent(
                conn,
                token.workspace_id,
                token.customer_id,
                consent.Statement(channel, "revoked", source, f"{stamp_time}|{event_id}"),
            )
            name = "Unsubscribed" if topic is None else "Subscription Group Updated"
            properties: dict[str, Any] = {
                "channel": "email",
                "source": source,
                "message_id": token.message_id,
            }
            if topic is not None:
                properties.update(topic=topic, status="revoked")
            events.append(
                Envelope.new(
                    "track",
                    token.workspace_id,
                    token.customer_id,
                    {
                        "type": "track",
                        "event": name,
                        "messageId": event_id,
                        "customerId": token.customer_id,
                        "properties": properties,
                        "timestamp": now.isoformat(),
                        "receivedAt": now.isoformat(),
                    },
                    occurred_at=now,
                    event_id=event_id,
                )
            )
        await delivery.outbox.add(conn, topics.RAW_EVENTS, events)
    delivery.outbox.pending.set()


@router.post("/u/{token}/one-click", response_class=PlainTextResponse)
async def one_click(token: str, request: Request) -> str:
    """RFC 8058: the mail client POSTs ``List-Unsubscribe=One-Click``; no cookie, no login."""
    verified = _verify(request, token)
    await _leave(request.app.state.delivery, verified, [None], "one-click")
    return "You are unsubscribed.\n"


@router.get("/u/{token}", response_class=HTMLResponse)
async def preferences(token: str, request: Request) -> str:
    verified = _verify(request, token)
    words = WORDS[_language(request)]
    delivery: Delivery = request.app.state.delivery
    async with delivery.engine.connect() as conn:
        names = await _topics(conn, verified.workspace_id)
    boxes = "".join(
        f'<p><label><input type="checkbox" name="topic" value="{html.escape(t)}"> '
        f"{html.escape(t)}</label></p>"
        for t in names
    )
    return (
        f'<!doctype html><html lang="{_language(request)}"><meta charset="utf-8">'
        f"<title>{words['title']}</title><h1>{words['title']}</h1><p>{words['lead']}</p>"
        f'<form method="post">{boxes}<p><label><input type="checkbox" name="all" value="1"> '
        f"{words['all']}</label></p><button>{words['save']}</button></form></html>"
    )


@router.post("/u/{token}", response_class=HTMLResponse)
async def save_preferences(token: str, request: Request) -> str:
    verified = _verify(request, token)
    form = await request.form()
    left: list[str | None] = [None] if form.get("all") else []
    left += [str(t) for t in form.getlist("topic") if str(t)]
    if left:
        await _leave(request.app.state.delivery, verified, left, "preferences")
    words = WORDS[_language(request)]
    return (
        f'<!doctype html><meta charset="utf-8"><title>{words["title"]}</title>'
        f"<p>{words['done']}</p>"
    )
