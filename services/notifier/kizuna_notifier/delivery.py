"""Send requests to delivered mail, exactly once in effect.

1. One transaction records every request of the batch in the sends ledger (``sending``) and
   settles the ones that will not be sent (skipped, failed), with their outcomes.
2. The mails go out, a few SMTP connections in parallel.
3. One transaction marks each sent, bounced (the address is suppressed) or to be retried, with
   its outcome on the outbox.

A request seen again after step 3 is ignored. If the process dies between 1 and 3, the ones
left ``sending`` are sent again when the request is redelivered, with the same Message-ID:
that window (the batch in flight) is the only place a recipient can get a copy twice. (Step 3
is retried for a while if the database is away, so a short outage does not reopen it.)"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Any

import orjson
import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kizuna import consent, topics, tracking_tokens
from kizuna.bus import Bus, PoisonMessage
from kizuna.db import retry_while_database_away
from kizuna.envelope import Envelope, utcnow
from kizuna.outbox import Outbox
from kizuna_notifier.adapters import store, webhooks
from kizuna_notifier.adapters.line import LinePusher
from kizuna_notifier.adapters.mail import Mailer, Result
from kizuna_notifier.domain import channels as channel_settings
from kizuna_notifier.domain import decisions, email, line, rate
from kizuna_notifier.domain.decisions import Fail, Hook, Mail, Push, SendRequest, Skip
from kizuna_notifier.settings import NotifierSettings

log = structlog.get_logger(__name__)
MAX_ATTEMPTS = 6
SEND_REQUESTED = "send.requested"
UNSUBSCRIBE_DAYS = 365
SETTLE_RETRY_SECONDS = 60.0  # how long recording sends already made is retried


@dataclass
class Links:
    settings: NotifierSettings

    def unsubscribe_token(self, workspace_id: str, customer_id: str, send_id: str) -> str:
        return tracking_tokens.sign(
            tracking_tokens.TrackingToken(
                kind="unsubscribe",
                workspace_id=workspace_id,
                customer_id=customer_id,
                message_id=send_id,
                expires_at=int(time.time()) + UNSUBSCRIBE_DAYS * 86400,
            ),
            self.settings.secret_key.get_secret_value(),
        )

    def for_send(self, workspace_id: str, customer_id: str, send_id: str) -> dict[str, str]:
        token = self.unsubscribe_token(workspace_id, customer_id, send_id)
        base = self.settings.notifier_public_url.rstrip("/")
        return {
            "unsubscribe_url": f"{base}/u/{token}",
            "preferences_url": f"{base}/u/{token}",
            "one_click_url": f"{base}/u/{token}/one-click",
        }


def outcome(
    kind: str, workspace_id: str, request: SendRequest, now: datetime, **detail: Any
) -> Envelope:
    return Envelope.new(
        f"delivery.{kind}",
        workspace_id,
        request.customer_id,
        {
            "send_id": request.send_id,
            "channel": request.channel,
            "category": request.category,
            "template": request.template,
            "journey_id": request.journey_id,
            "run_id": request.run_id,
            "step_id": request.step_id,
            **detail,
        },
        occurred_at=now,
        event_id=f"outcome:{request.send_id}:{kind}",
    )


Job = tuple[SendRequest, dict[str, Any], Callable[[], Awaitable[Result]]]


@dataclass
class Delivery:
    engine: AsyncEngine
    bus: Bus
    mailer: Mailer
    settings: NotifierSettings
    outbox: Outbox
    poster: webhooks.WebhookPoster = field(default_factory=webhooks.WebhookPoster)
    pusher: LinePusher | None = None
    clock: Callable[[], datetime] = utcnow
    links: Links = field(init=False)

    def __post_init__(self) -> None:
        self.links = Links(self.settings)
        if self.pusher is None:
            self.pusher = LinePusher(self.settings.notifier_line_api_url)

    async def handle(self, events: Sequence[Envelope]) -> None:
        by_workspace: dict[str, list[SendRequest]] = {}
        for event in events:
            if event.type != SEND_REQUESTED:
                continue
            try:
                request = SendRequest.model_validate(event.payload)
            except ValidationError as error:
                raise PoisonMessage(f"not a send request: {error}") from error
            by_workspace.setdefault(event.workspace_id, []).append(request)
        for workspace_id, requests in by_workspace.items():
            unique = list({r.send_id: r for r in requests}.values())
            await self.deliver(workspace_id, unique, {})

    async def deliver(
        self, workspace_id: str, requests: Sequence[SendRequest], attempts: dict[str, int]
    ) -> None:
        now = self.clock()
        chosen: list[tuple[SendRequest, Mail | Push | Hook, dict[str, str]]] = []
        async with self.engine.begin() as conn:
            if not attempts:
                claimed = await store.claim(
                    conn, workspace_id, [r.model_dump(mode="json") for r in requests]
                )
                attempts = {c.send_id: c.attempts for c in claimed}
                requests = [r for r in requests if r.send_id in attempts]
            consent_rows = await store.consent_of(
                conn, workspace_id, [r.customer_id for r in requests]
            )
            found = await store.templates_of(
                conn, workspace_id, [r.template for r in requests if r.template]
            )
            channels = await store.channel_configs(conn, workspace_id)
            settled: list[dict[str, Any]] = []
            outcomes: list[Envelope] = []
            consent_of: dict[str, dict[str, str]] = {}
            for (customer, channel), status in consent_rows.items():
                consent_of.setdefault(customer, {})[channel] = status
            for request in requests:
                links = self.links.for_send(workspace_id, request.customer_id, request.send_id)
                decision = decisions.decide(
                    request,
                    consent_of.get(request.customer_id, {}),
                    found.get(request.template or ""),
                    {k: v for k, v in links.items() if k != "one_click_url"},
                    {"id": workspace_id},
                )
                if isinstance(decision, Push) and not channels.get("line", {}).get("access_token"):
                    decision = Fail("no LINE channel access token (PUT /v1/channels/line)")
                if isinstance(decision, Skip | Fail):
                    skipped = isinstance(decision, Skip)
                    status = "skipped" if skipped else "failed"
                    kind = "suppressed" if skipped else "failed"
                    settled.append(
                        {
                            "send_id": request.send_id,
                            "status": status,
                            "reason": decision.reason,
                            "message_id": None,
                            "recipient": None,
                        }
                    )
                    outcomes.append(
                        outcome(kind, workspace_id, request, now, reason=decision.reason)
                    )
                else:
                    chosen.append((request, decision, links))
            await store.finish(conn, workspace_id, settled)
            await self.outbox.add(conn, topics.DELIVERY_OUTCOMES, outcomes)
        if outcomes:
            self.outbox.pending.set()
        if chosen:
            jobs = await self._jobs(workspace_id, chosen, channels)
            await self._send(workspace_id, jobs, channels, attempts)

    async def _jobs(
        self,
        workspace_id: str,
        chosen: list[tuple[SendRequest, Mail | Push | Hook, dict[str, str]]],
        channels: dict[str, dict[str, Any]],
    ) -> list[Job]:
        secret = self.settings.secret_key.get_secret_value()
        name, address = parseaddr(
            channels.get("email", {}).get("from") or self.settings.notifier_from
        )
        sender = (name or "Kizuna", address or "no-reply@kizuna.localhost")
        domain = sender[1].rpartition("@")[2] or "kizuna.localhost"
        jobs: list[Job] = []
        signing_secret = None
        for request, decision, links in chosen:
            if isinstance(decision, Hook):
                if signing_secret is None:
                    async with self.engine.begin() as conn:
                        signing_secret = await store.signing_secret(conn, workspace_id)
                jobs.append(
                    (
                        request,
                        {"message_id": request.send_id, "recipient": decision.url},
                        functools.partial(self._post, signing_secret, request, decision),
                    )
                )
            elif isinstance(decision, Push):
                assert self.pusher is not None
                key = line.retry_key(request.send_id)
                jobs.append(
                    (
                        request,
                        {"message_id": key, "recipient": decision.recipient},
                        functools.partial(
                            self.pusher.push,
                            str(channels["line"]["access_token"]),
                            decision.recipient,
                            decision.messages,
                            key,
                        ),
                    )
                )
            else:
                marketing = request.category == "marketing"
                tracking = email.Tracking(
                    self.settings.notifier_tracking_url.rstrip("/"),
                    secret,
                    workspace_id,
                    request.customer_id,
                )
                message = email.build(
                    decision.parts,
                    email.Envelope(sender[0], sender[1], decision.recipient, domain),
                    request.send_id,
                    marketing=marketing,
                    tracking=tracking if marketing else None,
                    unsubscribe_url=links["unsubscribe_url"],
                    one_click_url=links["one_click_url"],
                )
                jobs.append(
                    (
                        request,
                        {"message_id": message.message_id, "recipient": decision.recipient},
                        functools.partial(self.mailer.send, workspace_id, request.send_id, message),
                    )
                )
        return jobs

    async def _post(self, signing_secret: str, request: SendRequest, hook: Hook) -> Result:
        body = orjson.dumps(hook.body).decode()
        # the signature's time is the receiver's replay guard: real time, not the clock
        headers = webhooks.signed_headers(signing_secret, request.send_id, utcnow(), body)
        return await self.poster.post(hook.url, body, headers)

    async def _send(
        self,
        workspace_id: str,
        jobs: list[Job],
        channels: dict[str, dict[str, Any]],
        attempts: dict[str, int],
    ) -> None:
        """Each job waits its turn under the workspace's rate limit for its channel; the ones
        whose turn is too far off are parked in the ledger until then."""
        now = self.clock().timestamp()
        by_channel: dict[str, list[int]] = {}
        for index, (request, _, _) in enumerate(jobs):
            by_channel.setdefault(request.channel, []).append(index)
        delays: dict[int, float] = {}
        parked: dict[int, datetime] = {}
        async with self.engine.begin() as conn:
            for channel, indexes in sorted(by_channel.items()):
                per_second, burst = channel_settings.rate(
                    channels.get(channel, {}), self._default_rate(channel)
                )
                admission = await store.reserve(
                    conn,
                    workspace_id,
                    channel,
                    functools.partial(
                        rate.admit,
                        now=now,
                        per_second=per_second,
                        burst=burst,
                        wanted=len(indexes),
                        max_wait=self.settings.notifier_rate_max_wait_seconds,
                    ),
                )
                delays.update(zip(indexes, admission.delays, strict=False))
                if admission.resume_at is not None:
                    resume = datetime.fromtimestamp(admission.resume_at, UTC)
                    parked.update((i, resume) for i in indexes[len(admission.delays) :])

        async def run(index: int) -> Result:
            if index in parked:
                return Result("deferred", "waiting for the rate limit", parked[index])
            if delays[index] > 0:
                await asyncio.sleep(delays[index])
            return await jobs[index][2]()

        results = await asyncio.gather(*(run(i) for i in range(len(jobs))))
        await self._settle(
            workspace_id,
            [(r, row, result) for (r, row, _), result in zip(jobs, results, strict=True)],
            attempts,
        )

    def _default_rate(self, channel: str) -> float:
        if channel == "line":
            return self.settings.notifier_line_per_second
        if channel == "webhook":
            return self.settings.notifier_webhook_per_second
        return self.settings.notifier_email_per_second

    async def _settle(
        self,
        workspace_id: str,
        done: list[tuple[SendRequest, dict[str, Any], Result]],
        attempts: dict[str, int],
    ) -> None:
        """Step 3. The mails are out: if the database is away for a moment, keep trying to
        record them rather than fail the batch, whose redelivery would send every one of them
        again (they are still ``sending``)."""
        await retry_while_database_away(
            functools.partial(self._record_settled, workspace_id, done, attempts),
            seconds=SETTLE_RETRY_SECONDS,
            event="settle_failed_will_retry",
            sends=len(done),
        )

    async def _record_settled(
        self,
        workspace_id: str,
        done: list[tuple[SendRequest, dict[str, Any], Result]],
        attempts: dict[str, int],
    ) -> None:
        now = self.clock()
        async with self.engine.begin() as conn:
            finished, outcomes = [], []
            for request, base, result in done:
                row = {
                    "send_id": request.send_id,
                    **base,
                    "reason": result.detail or None,
                    "tried": 1,
                }
                tried = attempts.get(request.send_id, 0) + 1
                if result.verdict == "deferred":
                    finished.append(
                        {
                            **row,
                            "status": "retrying",
                            "tried": 0,
                            "next_attempt_at": result.retry_at,
                        }
                    )
                elif result.verdict == "sent":
                    finished.append({**row, "status": "sent"})
                    outcomes.append(
                        outcome(
                            "delivered", workspace_id, request, now, message_id=base["message_id"]
                        )
                    )
                elif result.verdict == "bounced":
                    finished.append({**row, "status": "bounced"})
                    outcomes.append(
                        outcome(
                            "bounced",
                            workspace_id,
                            request,
                            now,
                            bounce_type="hard" if request.channel == "email" else "unreachable",
                            reason=result.detail,
                        )
                    )
                    await self._suppress(conn, workspace_id, request, now)
                elif result.verdict == "failed" or tried >= MAX_ATTEMPTS:
                    finished.append({**row, "status": "failed"})
                    outcomes.append(
                        outcome("failed", workspace_id, request, now, reason=result.detail)
                    )
                else:
                    wait = self.settings.notifier_retry_seconds * 4 ** (tried - 1)
                    finished.append(
                        {
                            **row,
                            "status": "retrying",
                            "next_attempt_at": now + timedelta(seconds=wait),
                        }
                    )
            await store.finish(conn, workspace_id, finished)
            await self.outbox.add(conn, topics.DELIVERY_OUTCOMES, outcomes)
        if outcomes:
            self.outbox.pending.set()

    async def close(self) -> None:
        await self.mailer.close()
        await self.poster.close()
        if self.pusher is not None:
            await self.pusher.close()

    async def _suppress(
        self, conn: AsyncConnection, workspace_id: str, request: SendRequest, now: datetime
    ) -> None:
        stamp = f"{now.strftime('%Y-%m-%dT%H:%M:%S.%f')}|bounce:{request.send_id}"
        await store.record_consent(
            conn,
            workspace_id,
            request.customer_id,
            consent.Statement(
                request.channel,
                "suppressed",
                "hard_bounce" if request.channel == "email" else "unreachable",
                stamp,
            ),
        )

    async def publish_outbox(self) -> int:
        return await self.outbox.publish_pending(self.engine, self.bus)

    async def retry_due(self, limit: int = 200) -> int:
        async with self.engine.begin() as conn:
            rows = await store.due_retries(conn, self.clock(), limit)
        by_workspace: dict[str, list[tuple[SendRequest, int]]] = {}
        for row in rows:
            request = SendRequest.model_validate(row.request)
            by_workspace.setdefault(row.workspace_id, []).append((request, row.attempts))
        for workspace_id, items in by_workspace.items():
            await self.deliver(
                workspace_id, [r for r, _ in items], {r.send_id: n for r, n in items}
            )
        return len(rows)

    async def observe_consent(self, events: Sequence[Envelope]) -> None:
        """Resolved events that state consent or suppress a channel update the mirror."""
        async with self.engine.begin() as conn:
            for event in events:
                for statement in consent.statements(event):
                    await store.record_consent(
                        conn, event.workspace_id, event.customer_key, statement
                    )
