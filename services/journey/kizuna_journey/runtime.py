"""The journey service's moving parts: consumers, the timer and schedule loops, the outbox."""

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
from kizuna_journey import engagement, handlers

OUTBOX_LOCK = 0x4A524E59
TIDY_SECONDS = 600
log = structlog.get_logger(__name__)


@dataclass
class Journeys:
    engine: AsyncEngine
    bus: Bus
    timer_batch: int = 1000
    poll_seconds: float = 0.2
    clock: Callable[[], datetime] = utcnow
    outbox: Outbox = field(default_factory=lambda: Outbox("jr_outbox", OUTBOX_LOCK))

    def __post_init__(self) -> None:
        self.outbox.writes_to(self.bus, self.engine)

    async def handle_events(self, events: Sequence[Envelope]) -> None:
        async with self.outbox.transaction(self.engine) as (conn, outbox):
            await handlers.on_events(conn, events, self.clock(), outbox)

    async def handle_lifecycle(self, events: Sequence[Envelope]) -> None:
        async with self.outbox.transaction(self.engine) as (conn, outbox):
            await handlers.on_lifecycle(conn, events, self.clock(), outbox)

    async def fire_due(self) -> int:
        """Fires every run and trigger schedule due now, a batch per transaction; returns how
        many fired. Several replicas may run this at once: each claims different rows."""
        fired = 0
        while True:
            schedules = 0
            async with self.outbox.transaction(self.engine) as (conn, outbox):
                runs = await handlers.fire_due_runs(conn, self.clock(), self.timer_batch, outbox)
                if not runs:  # nothing written: the schedules can share the transaction
                    schedules = await handlers.fire_due_schedules(
                        conn, self.clock(), self.timer_batch, outbox
                    )
            if runs:
                async with self.outbox.transaction(self.engine) as (conn, outbox):
                    schedules = await handlers.fire_due_schedules(
                        conn, self.clock(), self.timer_batch, outbox
                    )
            fired += runs + schedules
            if runs < self.timer_batch and schedules < self.timer_batch:
                return fired

    async def publish_outbox(self) -> int:
        return await self.outbox.publish_pending(self.engine, self.bus)

    async def run_timers(self) -> None:
        while True:
            try:
                fired = await self.fire_due()
            except Exception:
                log.exception("journey_timers_failed")
                fired = 0
            if not fired:
                await asyncio.sleep(self.poll_seconds)

    async def run_outbox(self) -> None:
        await self.outbox.run_forever(self.engine, self.bus)

    async def tidy(self, seen_for_hours: float) -> None:
        """Forgets event ids older than the bus keeps messages (no redelivery can be older)
        and published outbox rows."""
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "DELETE FROM jr_seen_events WHERE seen_at < now() - make_interval(hours => :h)"
                ),
                {"h": seen_for_hours},
            )
        await self.outbox.prune(self.engine, keep_hours=1)

    async def run_tidying(self, seen_for_hours: float) -> None:
        while True:
            try:
                await self.tidy(seen_for_hours)
            except Exception:
                log.exception("journey_tidying_failed")
            await asyncio.sleep(TIDY_SECONDS)


def decode(message: BusMessage) -> Envelope:
    return Envelope.from_bytes(message.value)


LIFECYCLE_HANDLED = (b'"customer.merged"', b'"customer.erased"')


def decode_lifecycle(message: BusMessage) -> Envelope | None:
    """Only merges and erasures move journey state; the rest (customer.created, the most
    frequent by far) is skipped undecoded."""
    if not any(marker in message.value for marker in LIFECYCLE_HANDLED):
        return None
    return decode(message)


def decode_engagement(message: BusMessage) -> Envelope | None:
    return decode(message) if engagement.may_matter(message.value) else None


Current = Callable[[], Journeys]


def consumers(current: Current) -> list[ConsumerFactory]:
    def events(context: ServiceContext) -> ConsumerRunner[Envelope]:
        async def handle(batch: Sequence[Decoded[Envelope]]) -> None:
            await current().handle_events([item.value for item in batch])

        return consumer_runner(
            context, "journey", [topics.RESOLVED_EVENTS, topics.SEGMENT_CHANGES], decode, handle
        )

    def lifecycle(context: ServiceContext) -> ConsumerRunner[Envelope | None]:
        async def handle(batch: Sequence[Decoded[Envelope | None]]) -> None:
            events = [item.value for item in batch if item.value is not None]
            if events:
                await current().handle_lifecycle(events)

        return consumer_runner(
            context, "journey-lifecycle", [topics.CUSTOMER_LIFECYCLE], decode_lifecycle, handle
        )

    def results(context: ServiceContext) -> ConsumerRunner[Envelope | None]:
        async def handle(batch: Sequence[Decoded[Envelope | None]]) -> None:
            events = [item.value for item in batch if item.value is not None]
            if events:
                await engagement.record(context.engine, events)

        return consumer_runner(
            context,
            "journey-results",
            [topics.DELIVERY_OUTCOMES, topics.RESOLVED_EVENTS],
            decode_engagement,
            handle,
        )

    return [events, lifecycle, results]


def background(current: Current) -> list[BackgroundTask]:
    async def timers(_: ServiceContext) -> None:
        await current().run_timers()

    async def outbox(_: ServiceContext) -> None:
        await current().run_outbox()

    async def tidying(context: ServiceContext) -> None:
        await current().run_tidying(context.settings.bus_retention_hours)

    return [timers, outbox, tidying]
