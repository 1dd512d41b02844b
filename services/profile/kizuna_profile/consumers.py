"""The profile service's consumers: thin loops around the handlers."""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna import topics
from kizuna.bus import Bus, BusMessage, ConsumerRunner, Decoded, OutgoingMessage
from kizuna.envelope import Envelope
from kizuna.service import ServiceContext, consumer_runner
from kizuna_profile import handlers, metrics, outcomes, segments

RAW_EVENTS_GROUP = "profile"
SEGMENTS_GROUP = "profile-segments"
OUTCOMES_GROUP = "profile-outcomes"
log = structlog.get_logger(__name__)


def decode(message: BusMessage) -> Envelope:
    return Envelope.from_bytes(message.value)


async def publish(bus: Bus, outcome: handlers.Outcome) -> None:
    """Merges first, so a service that sees a survivor's event may already know its history."""
    if outcome.lifecycle:
        await bus.publish_batch(
            topics.CUSTOMER_LIFECYCLE,
            [OutgoingMessage(e.bus_key, e.to_bytes()) for e in outcome.lifecycle],
        )
    if outcome.resolved:
        await bus.publish_batch(
            topics.RESOLVED_EVENTS,
            [OutgoingMessage(e.bus_key, e.to_bytes()) for e in outcome.resolved],
        )


async def resolve_and_publish(
    engine: AsyncEngine, bus: Bus, events: Sequence[Envelope]
) -> handlers.Outcome:
    """One transaction resolves and stores the events; they are published once it committed.
    A crash in between republishes on redelivery (ADR 0004)."""
    async with engine.begin() as conn:
        outcome = await handlers.process(conn, events)
    await publish(bus, outcome)
    metrics.record(outcome)
    return outcome


def raw_events_consumer(context: ServiceContext) -> ConsumerRunner[Envelope]:
    async def handle(batch: Sequence[Decoded[Envelope]]) -> None:
        await resolve_and_publish(context.engine, context.bus, [item.value for item in batch])

    return consumer_runner(context, RAW_EVENTS_GROUP, [topics.RAW_EVENTS], decode, handle)


def segment_changes_consumer(context: ServiceContext) -> ConsumerRunner[Envelope]:
    async def handle(batch: Sequence[Decoded[Envelope]]) -> None:
        async with context.engine.begin() as conn:
            await segments.apply_changes(conn, [item.value for item in batch])

    return consumer_runner(context, SEGMENTS_GROUP, [topics.SEGMENT_CHANGES], decode, handle)


def delivery_outcomes_consumer(context: ServiceContext) -> ConsumerRunner[Envelope]:
    async def handle(batch: Sequence[Decoded[Envelope]]) -> None:
        events = [outcomes.as_tracked_event(item.value) for item in batch]
        relevant = [event for event in events if event is not None]
        if relevant:
            await resolve_and_publish(context.engine, context.bus, relevant)

    return consumer_runner(context, OUTCOMES_GROUP, [topics.DELIVERY_OUTCOMES], decode, handle)
