"""The segmenter's moving parts: consumers, the time sweep, the outbox publisher."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna import topics
from kizuna.bus import Bus, BusMessage, ConsumerRunner, Decoded
from kizuna.envelope import Envelope, utcnow
from kizuna.outbox import Outbox
from kizuna.service import BackgroundTask, ConsumerFactory, ServiceContext, consumer_runner
from kizuna_segmenter import handlers, rules
from kizuna_segmenter.adapters import store

SWEEP_BATCH = 1000
FULL_PASS_CHUNK = 5000
MOVED_CHUNK = 50_000  # only the rows whose scores move come back to Python
OUTBOX_LOCK = 0x5345474F  # one publisher at a time keeps each customer's changes in order
log = structlog.get_logger(__name__)


@dataclass
class Segmenter:
    engine: AsyncEngine
    bus: Bus
    clock: Callable[[], datetime] = utcnow
    outbox: Outbox = field(default_factory=lambda: Outbox("seg_outbox", OUTBOX_LOCK))

    @property
    def outbox_pending(self) -> asyncio.Event:
        return self.outbox.pending

    async def handle_events(self, events: Sequence[Envelope]) -> None:
        async with self.engine.begin() as conn:
            changed = await handlers.on_events(conn, events, self.clock())
        if changed:
            self.outbox_pending.set()

    async def handle_lifecycle(self, events: Sequence[Envelope]) -> None:
        async with self.engine.begin() as conn:
            changed = await handlers.on_lifecycle(conn, events, self.clock())
        if changed:
            self.outbox_pending.set()

    async def refresh_bounds(
        self, workspace_id: str, *, force: bool = False, refresh_facts: bool = False
    ) -> int:
        """Recomputes the workspace's boundaries if stale, then rescores every buyer against
        them, a chunk per transaction, from the facts they were scored with (or, with
        ``refresh_facts``, from the order ledger). Returns how many tiers changed."""
        now = self.clock()
        async with self.engine.begin() as conn:
            if not force and not await handlers.bounds_are_stale(conn, workspace_id, now):
                return 0
            await store.recompute_bounds(conn, workspace_id, now)
        changed, segment_changes, after = 0, 0, ""
        while True:
            async with self.engine.begin() as conn:
                if refresh_facts:
                    ids = await handlers.buyer_ids_after(conn, workspace_id, after, FULL_PASS_CHUNK)
                    changed += len(await handlers.rescore(conn, workspace_id, ids, now))
                    rescored = ids
                else:
                    bounds, _ = await store.bounds_of(conn, workspace_id)
                    last, moved = await store.moved_buyers_after(
                        conn, workspace_id, after, MOVED_CHUNK, bounds, now
                    )
                    ids = [last] if last else []
                    changed += len(await handlers.rescore_stored(conn, workspace_id, moved, now))
                    rescored = sorted(moved)
                if rescored:  # rule segments on RFM scores or tiers follow them
                    segment_changes += await rules.reevaluate(conn, workspace_id, now, rescored)
            if not ids:
                break
            after = ids[-1]
        if changed or segment_changes:
            self.outbox_pending.set()
        return changed

    async def sweep(self) -> int:
        """Boundaries first (they move everyone), then the customers time has moved."""
        async with self.engine.connect() as conn:
            workspaces = [
                row.workspace_id
                for row in await conn.execute(
                    sa.text("SELECT DISTINCT workspace_id FROM seg_customers")
                )
            ]
        changed = 0
        for workspace_id in workspaces:
            changed += await self.refresh_bounds(workspace_id)
            async with self.engine.begin() as conn:
                changed += await rules.reevaluate(
                    conn, workspace_id, self.clock(), time_based_only=True
                )
        while True:
            async with self.engine.begin() as conn:
                reviewed, moved = await handlers.sweep_due(conn, self.clock(), SWEEP_BATCH)
            changed += moved
            if moved:
                self.outbox_pending.set()
            if reviewed < SWEEP_BATCH:
                return changed

    async def publish_outbox(self) -> int:
        """Publishes pending segment changes in order, then marks them (kizuna.outbox)."""
        return await self.outbox.publish_pending(self.engine, self.bus)

    async def run_outbox(self) -> None:
        await self.outbox.run_forever(self.engine, self.bus)

    async def run_sweeps(self, every_seconds: float) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("segment_sweep_failed")
            await asyncio.sleep(every_seconds)


def decode(message: BusMessage) -> Envelope:
    return Envelope.from_bytes(message.value)


Current = Callable[[], Segmenter]  # the app's Segmenter, which exists once the app started


def consumers(current: Current) -> list[ConsumerFactory]:
    def resolved(context: ServiceContext) -> ConsumerRunner[Envelope]:
        async def handle(batch: Sequence[Decoded[Envelope]]) -> None:
            await current().handle_events([item.value for item in batch])

        return consumer_runner(context, "segmenter", [topics.RESOLVED_EVENTS], decode, handle)

    def lifecycle(context: ServiceContext) -> ConsumerRunner[Envelope]:
        async def handle(batch: Sequence[Decoded[Envelope]]) -> None:
            await current().handle_lifecycle([item.value for item in batch])

        return consumer_runner(
            context, "segmenter-lifecycle", [topics.CUSTOMER_LIFECYCLE], decode, handle
        )

    return [resolved, lifecycle]


def background(current: Current, sweep_seconds: float) -> list[BackgroundTask]:
    async def outbox(_: ServiceContext) -> None:
        await current().run_outbox()

    async def sweeps(_: ServiceContext) -> None:
        await current().run_sweeps(sweep_seconds)

    return [outbox, sweeps]
