"""Integration webhooks: Kizuna's events kept as messages for the workspace's endpoints, then
delivered, signed, retried and dead-lettered (docs/webhooks.md).

The consumer only records (one transaction per batch); the dispatcher takes due deliveries
under a lease, posts them concurrently and settles a whole round in one transaction. Rounds
overlap: the next is claimed and posting while the last settles. A delivery answered 2xx and
settled is never attempted again; one answered 2xx whose settling was cut short by a crash
is attempted again after its lease, with the same ``webhook-id``. Settling is retried for a
while when PostgreSQL is away, so a moment's outage repeats nothing."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna.aio import wait_event
from kizuna.db import retry_while_database_away
from kizuna.envelope import Envelope, utcnow
from kizuna_notifier.adapters import integration_store as store
from kizuna_notifier.adapters.webhooks import Attempt, WebhookPoster, signed_headers
from kizuna_notifier.domain import endpoints, integrations
from kizuna_notifier.settings import NotifierSettings

log = structlog.get_logger(__name__)
DISABLED = "webhook.endpoint.disabled"
PIPELINE = 2  # rounds in flight: the next one claimed and posting while the last settles
SETTLE_RETRY_SECONDS = 60.0  # how long recording attempts already made is retried


@dataclass
class Claim:
    rows: Sequence[Any]
    lease: datetime
    made: float  # loop time
    start_by: float  # after which a post is no longer started: the lease could run out first
    answers: list[Attempt | None] = field(init=False)  # None: not tried
    left: int = field(init=False)
    posted: asyncio.Event = field(init=False, default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.answers = [None] * len(self.rows)
        self.left = len(self.rows)


@dataclass
class Dispatcher:
    engine: AsyncEngine
    poster: WebhookPoster
    settings: NotifierSettings
    clock: Callable[[], datetime] = utcnow
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    settling: asyncio.Lock = field(init=False)
    _disabled: dict[str, float] = field(init=False, default_factory=dict)  # id → loop time

    def __post_init__(self) -> None:
        self.settling = asyncio.Lock()  # one round's settle at a time: endpoint rows in order

    async def record(self, events: Sequence[Envelope]) -> int:
        """Keeps the webhook messages these events stand for and makes a delivery for every
        enabled endpoint subscribed to each. Returns how many deliveries were made."""
        candidates = [
            (event.workspace_id, message)
            for event in events
            if (message := integrations.message_for(event)) is not None
        ]
        if not candidates:
            return 0
        async with self.engine.begin() as conn:
            found = await store.endpoints_of(conn, {w for w, _ in candidates})
            if not found:
                return 0
            by_workspace: dict[str, list[Any]] = {}
            for row in found:
                by_workspace.setdefault(row.workspace_id, []).append(row)
            kept = [(w, m) for w, m in candidates if w in by_workspace]
            deliveries = [
                (workspace_id, row.id, message.id)
                for workspace_id, message in kept
                for row in by_workspace[workspace_id]
                if row.enabled and integrations.subscribed(row.event_types, message.type)
            ]
            await store.record(conn, kept, deliveries, self.clock())
        if deliveries:
            self.wakeup.set()
        return len(deliveries)

    async def dispatch_due(self) -> int:
        """One round: the due deliveries, posted concurrently. Returns how many were tried."""
        return await self._dispatch(1)

    async def drain(self) -> int:
        """Rounds until one finds nothing due, ``PIPELINE`` of them in flight: the next is
        claimed while the last posts, and posts while the one before settles. Returns how many
        deliveries were taken. A failure (a claim's, or a round's settle given up) is raised
        once the rounds in flight have ended; only a cancellation stops them, and their leases
        bring their deliveries back."""
        return await self._dispatch(None)

    async def _dispatch(self, most: int | None) -> int:
        """Up to ``most`` rounds (None: until nothing is due); their posts made by as many
        posters as ``notifier_webhook_connections``, taking deliveries in claim order."""
        taken = claims = 0
        queue: asyncio.Queue[tuple[Claim, int]] = asyncio.Queue()
        posters: list[asyncio.Task[None]] = []
        rounds: set[asyncio.Task[None]] = set()
        failures: list[BaseException] = []

        def reap(done: set[asyncio.Task[None]]) -> None:
            for task in done:
                rounds.discard(task)
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    failures.append(error)

        try:
            while not failures and (most is None or claims < most):
                if len(rounds) >= PIPELINE:
                    reap((await asyncio.wait(rounds, return_when=asyncio.FIRST_COMPLETED))[0])
                    continue
                claim = await self._claim()
                if claim is None:
                    break
                taken += len(claim.rows)
                claims += 1
                if not posters:
                    count = self.settings.notifier_webhook_connections
                    posters = [asyncio.create_task(self._post_from(queue)) for _ in range(count)]
                rounds.add(asyncio.create_task(self._round(claim, queue)))
        except asyncio.CancelledError:
            for task in rounds:
                task.cancel()
            raise
        except Exception as error:
            failures.append(error)
        finally:
            if rounds:
                reap((await asyncio.wait(rounds))[0])
            for task in posters:
                task.cancel()
            if posters:
                await asyncio.wait(posters)
        if failures:
            for extra in failures[1:]:
                log.error("webhook_round_failed", exc_info=extra)
            raise failures[0]
        return taken

    async def _claim(self) -> Claim | None:
        now = self.clock()
        seconds = self.settings.notifier_webhook_lease_seconds
        lease = now + timedelta(seconds=seconds)
        made = asyncio.get_running_loop().time()
        async with self.engine.begin() as conn:
            due = await store.claim_due(conn, now, lease, self.settings.notifier_webhook_batch_size)
        return Claim(due, lease, made, made + seconds / 2) if due else None

    async def _round(self, claim: Claim, queue: asyncio.Queue[tuple[Claim, int]]) -> None:
        for index in range(len(claim.rows)):
            queue.put_nowait((claim, index))
        await claim.posted.wait()
        tried = [
            (row, answer)
            for row, answer in zip(claim.rows, claim.answers, strict=True)
            if answer is not None
        ]
        if tried:
            await self._settle(tried, claim.lease)

    async def _post_from(self, queue: asyncio.Queue[tuple[Claim, int]]) -> None:
        while True:
            claim, index = await queue.get()
            try:
                claim.answers[index] = await self._attempt(claim.rows[index], claim)
            except Exception:  # not tried, then: its lease brings it back
                log.exception("webhook_attempt_failed", message=claim.rows[index].message_id)
            claim.left -= 1
            if not claim.left:
                claim.posted.set()

    async def _attempt(self, row: Any, claim: Claim) -> Attempt | None:
        """None: not tried, because its endpoint was disabled after the claim (by a round in
        flight beside it) or its lease is half gone; the lease brings it back."""
        now = asyncio.get_running_loop().time()
        if now > claim.start_by or self._disabled.get(row.endpoint_id, 0.0) > claim.made:
            return None
        keys = [s["secret"] for s in endpoints.active(row.secrets, self.clock())]
        # the signature's time is the receiver's replay guard: real time, not the clock
        headers = signed_headers(keys, row.message_id, utcnow(), row.body)
        return await self.poster.attempt(row.url, row.body, headers)

    async def _settle(self, tried: Sequence[tuple[Any, Attempt]], lease: datetime) -> None:
        """The posts are made: if the database is away for a moment, keep trying to record them
        rather than leave them to their lease, after which each would be posted again."""
        async with self.settling:
            await retry_while_database_away(
                functools.partial(self._record_settled, tried, lease),
                seconds=SETTLE_RETRY_SECONDS,
                event="webhook_settle_failed_will_retry",
                n=len(tried),
            )

    async def _record_settled(self, tried: Sequence[tuple[Any, Attempt]], lease: datetime) -> None:
        now = self.clock()
        attempts, outcomes = [], []
        succeeded: set[str] = set()
        failed: set[str] = set()
        gone: dict[str, Any] = {}
        for row, answer in tried:
            attempts.append(
                {
                    "endpoint_id": row.endpoint_id,
                    "message_id": row.message_id,
                    "attempted_at": now,
                    "status_code": answer.status,
                    "latency_ms": answer.latency_ms,
                    "response": answer.response,
                    "error": answer.error,
                }
            )
            status, next_at = self._verdict(row, answer, now)
            if status == "succeeded":
                succeeded.add(row.endpoint_id)
            else:
                failed.add(row.endpoint_id)
            if answer.status == 410:
                gone[row.endpoint_id] = row
            outcomes.append(
                {
                    "endpoint_id": row.endpoint_id,
                    "message_id": row.message_id,
                    "status": status,
                    "next_attempt_at": next_at,
                    "last_status": answer.status,
                    "last_error": answer.error,
                }
            )
        async with self.engine.begin() as conn:
            await store.settle(conn, attempts, outcomes, lease)
            await store.mark_health(conn, succeeded, failed, now)
            for endpoint_id, row in gone.items():
                await self._disable(conn, row.workspace_id, endpoint_id, row.url, "410 Gone", now)
            hours = self.settings.notifier_webhook_disable_after_hours
            limit = now - timedelta(hours=hours)
            for endpoint in await store.failing_too_long(conn, failed - set(gone), limit):
                await self._disable(
                    conn,
                    endpoint.workspace_id,
                    endpoint.id,
                    endpoint.url,
                    f"no successful delivery for {hours:g} h",
                    now,
                )

    def _verdict(self, row: Any, answer: Attempt, now: datetime) -> tuple[str, datetime | None]:
        if answer.status is not None and 200 <= answer.status < 300:
            return "succeeded", None
        if answer.status == 410:
            return "dead", None
        failures = row.attempts + 1
        next_at = integrations.next_attempt(
            failures,
            now,
            integrations.parse_retry_after(answer.retry_after, now),
            integrations.jitter(row.message_id, row.endpoint_id, failures),
        )
        return ("pending", next_at) if next_at is not None else ("dead", None)

    async def _disable(
        self, conn: Any, workspace_id: str, endpoint_id: str, url: str, reason: str, now: datetime
    ) -> None:
        if not await store.disable(conn, endpoint_id, reason, now):
            return
        self._disabled[endpoint_id] = asyncio.get_running_loop().time()
        log.warning("webhook_endpoint_disabled", endpoint=endpoint_id, reason=reason)
        message = integrations.build(
            workspace_id,
            f"disabled:{endpoint_id}:{now.isoformat()}",
            DISABLED,
            now,
            {
                "endpoint_id": endpoint_id,
                "url": url,
                "reason": reason,
                "disabled_at": now.isoformat(),
            },
        )
        others = [
            (workspace_id, row.id, message.id)
            for row in await store.endpoints_of(conn, [workspace_id])
            if row.enabled
            and row.id != endpoint_id
            and integrations.subscribed(row.event_types, DISABLED)
        ]
        await store.record(conn, [(workspace_id, message)], others, now)

    async def run_forever(self) -> None:
        while True:
            self.wakeup.clear()
            try:
                tried = await self.drain()
            except Exception:
                log.exception("webhook_dispatch_failed")
                tried = 0
            if not tried:
                await wait_event(self.wakeup, 1.0)

    async def tidy_forever(self) -> None:
        while True:
            await asyncio.sleep(3600)
            before = self.clock() - timedelta(days=self.settings.notifier_webhook_retention_days)
            try:
                async with self.engine.begin() as conn:
                    await store.prune_messages(conn, before)
            except Exception:
                log.exception("webhook_tidy_failed")
