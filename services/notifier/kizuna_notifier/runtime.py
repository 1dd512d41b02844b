"""The notifier's moving parts: consumers, the retry loop, the outbox of outcomes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import sqlalchemy as sa
import structlog

from kizuna import topics
from kizuna.bus import BusMessage, ConsumerRunner, Decoded
from kizuna.envelope import Envelope
from kizuna.service import BackgroundTask, ConsumerFactory, ServiceContext, consumer_runner
from kizuna_notifier.adapters import integration_store
from kizuna_notifier.delivery import Delivery
from kizuna_notifier.integrations import Dispatcher

OUTBOX_LOCK = 0x4E544659
RETRY_POLL_SECONDS = 5.0
INTEGRATION_TOPICS = [
    topics.RESOLVED_EVENTS,
    topics.CUSTOMER_LIFECYCLE,
    topics.SEGMENT_CHANGES,
    topics.DELIVERY_OUTCOMES,
    topics.JOURNEY_EVENTS,
]
log = structlog.get_logger(__name__)


def decode(message: BusMessage) -> Envelope:
    return Envelope.from_bytes(message.value)


Current = Callable[[], Delivery]


def consumers(current: Current, dispatcher: Callable[[], Dispatcher]) -> list[ConsumerFactory]:
    def sends(context: ServiceContext) -> ConsumerRunner[Envelope]:
        async def handle(batch: Sequence[Decoded[Envelope]]) -> None:
            await current().handle([item.value for item in batch])

        return consumer_runner(context, "notifier", [topics.SEND_REQUESTS], decode, handle)

    def consent(context: ServiceContext) -> ConsumerRunner[Envelope]:
        async def handle(batch: Sequence[Decoded[Envelope]]) -> None:
            await current().observe_consent([item.value for item in batch])

        return consumer_runner(
            context, "notifier-consent", [topics.RESOLVED_EVENTS], decode, handle
        )

    def lifecycle(context: ServiceContext) -> ConsumerRunner[Envelope]:
        async def handle(batch: Sequence[Decoded[Envelope]]) -> None:
            await forget_erased(current(), [item.value for item in batch])

        return consumer_runner(
            context, "notifier-lifecycle", [topics.CUSTOMER_LIFECYCLE], decode, handle
        )

    def integrations(context: ServiceContext) -> ConsumerRunner[Envelope]:
        async def handle(batch: Sequence[Decoded[Envelope]]) -> None:
            await dispatcher().record([item.value for item in batch])

        return consumer_runner(context, "notifier-integrations", INTEGRATION_TOPICS, decode, handle)

    return [sends, consent, lifecycle, integrations]


async def forget_erased(delivery: Delivery, events: Sequence[Envelope]) -> None:
    """Erasure deletes what the notifier holds about the person; a merge moves consent."""
    async with delivery.engine.begin() as conn:
        for event in events:
            payload = event.payload
            if event.type == "customer.erased":
                ids = [
                    str(payload.get("customer_id")),
                    *map(str, payload.get("absorbed_ids") or []),
                ]
                await integration_store.forget_customers(conn, event.workspace_id, ids)
                for table in ("nt_consent", "nt_sends"):
                    await conn.execute(
                        sa.text(
                            f"DELETE FROM {table} WHERE workspace_id = :ws"  # noqa: S608
                            " AND customer_id = ANY(CAST(:ids AS text[]))"
                        ),
                        {"ws": event.workspace_id, "ids": ids},
                    )
            elif event.type == "customer.merged":
                await conn.execute(
                    sa.text(
                        "INSERT INTO nt_consent SELECT workspace_id, :s, channel, status, at,"
                        " strict, event_id, source FROM nt_consent WHERE workspace_id = :ws"
                        " AND customer_id = :a ON CONFLICT (workspace_id, customer_id, channel)"
                        " DO UPDATE SET status = excluded.status, at = excluded.at,"
                        " strict = excluded.strict, event_id = excluded.event_id,"
                        " source = excluded.source WHERE nt_consent.status <> 'suppressed'"
                        " AND (excluded.status = 'suppressed' OR (nt_consent.at,"
                        " nt_consent.strict, nt_consent.event_id) < (excluded.at,"
                        " excluded.strict, excluded.event_id))"
                    ),
                    {
                        "ws": event.workspace_id,
                        "a": str(payload.get("absorbed_id")),
                        "s": str(payload.get("survivor_id")),
                    },
                )


def background(current: Current, dispatcher: Callable[[], Dispatcher]) -> list[BackgroundTask]:
    async def outbox(_: ServiceContext) -> None:
        delivery = current()
        await delivery.outbox.run_forever(delivery.engine, delivery.bus)

    async def retries(_: ServiceContext) -> None:
        while True:
            try:
                await current().retry_due()
            except Exception:
                log.exception("notifier_retries_failed")
            await asyncio.sleep(RETRY_POLL_SECONDS)

    async def webhooks(_: ServiceContext) -> None:
        await dispatcher().run_forever()

    async def webhook_tidy(_: ServiceContext) -> None:
        await dispatcher().tidy_forever()

    return [outbox, retries, webhooks, webhook_tidy]
