"""A transactional outbox: a service writes the events its decision produces in the same
transaction as the decision, and a publisher moves them to the bus in order. A crash between
publishing and marking publishes them again under the same ids; consumers dedupe by id.

On the PostgreSQL event log the log lives in the service's own database, so an outbox that
``writes_to`` it appends a transaction's ``OutboxBatch`` straight into the log at the end of
that transaction: the same all-or-nothing guarantee without the publisher's hop (ADR 0011).

Plumbing only: the table (``id`` identity, ``event_id`` unique, ``topic``, ``key``, ``value``,
``published_at``) belongs to the service that uses it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kizuna import metrics
from kizuna.aio import wait_event
from kizuna.bus import Bus, OutgoingMessage
from kizuna.bus.pglog import PostgresLogBus
from kizuna.db import driver_connection
from kizuna.envelope import Envelope

log = structlog.get_logger(__name__)
BATCH = 500


@dataclass
class OutboxBatch:
    """What one transaction publishes, gathered while it decides and written at its end by
    ``Outbox.write``. An event id staged twice for a topic is kept once."""

    by_topic: dict[str, dict[str, Envelope]] = field(default_factory=dict)

    def add(self, topic: str, events: Sequence[Envelope]) -> None:
        staged = self.by_topic.setdefault(topic, {})
        for event in events:
            staged.setdefault(event.id, event)

    def __bool__(self) -> bool:
        return any(self.by_topic.values())


def _same_database(engine: AsyncEngine, dsn: str) -> bool:
    """Both URLs as written, driver aside: hosts and ports given in the query string (Unix
    sockets, several hosts) or left out on one side only count as different (the table)."""
    return bool(
        engine.url.set(drivername="postgresql") == make_url(dsn).set(drivername="postgresql")
    )


@dataclass
class Outbox:
    table: str  # a fixed name from the service's own code, never user input
    lock_key: int  # one publisher at a time keeps each customer's events in order
    batch: int = BATCH
    pending: asyncio.Event = field(default_factory=asyncio.Event)
    log_bus: PostgresLogBus | None = None  # set by writes_to: batches go straight into it

    def writes_to(self, bus: Bus, engine: AsyncEngine) -> None:
        """Batches go straight into ``bus`` when it is the PostgreSQL event log in the
        engine's database; otherwise (Kafka, or a log elsewhere) they go through the table
        and the publisher. When unsure, the table: see ``_same_database``."""
        if isinstance(bus, PostgresLogBus) and _same_database(engine, bus.dsn):
            self.log_bus = bus
        else:
            self.log_bus = None
        log.info("outbox_writes", table=self.table, straight_to_the_log=self.log_bus is not None)

    @asynccontextmanager
    async def transaction(
        self, engine: AsyncEngine
    ) -> AsyncIterator[tuple[AsyncConnection, OutboxBatch]]:
        """A transaction whose batch is written at its end, just before it commits; wakes the
        publisher once it has committed rows to the table."""
        batch = OutboxBatch()
        async with engine.begin() as conn:
            yield conn, batch
            to_publish = await self.write(conn, batch)
        if to_publish:
            self.pending.set()
        elif self.log_bus is not None:
            for topic, staged in batch.by_topic.items():
                metrics.MESSAGES_PUBLISHED.labels(topic).inc(len(staged))

    async def write(self, conn: AsyncConnection, batch: OutboxBatch) -> bool:
        """Writes the batch in the caller's transaction, as its last statements: appended to
        the log, the topics' partition locks are held until the commit, and taking them in
        topic order keeps two such transactions from deadlocking. Returns whether rows went
        to the table (for the publisher)."""
        if not batch:
            return False
        in_order = [(t, list(batch.by_topic[t].values())) for t in sorted(batch.by_topic)]
        if self.log_bus is None:
            for topic, events in in_order:
                await self.add(conn, topic, events)
            return True
        driver = await driver_connection(conn)
        for topic, events in in_order:
            messages = [OutgoingMessage(e.bus_key, e.to_bytes()) for e in events]
            await self.log_bus.append_in_transaction(driver, topic, messages)
        return False

    async def add(self, conn: AsyncConnection, topic: str, events: Sequence[Envelope]) -> None:
        if not events:
            return
        await (await driver_connection(conn)).execute(
            f"INSERT INTO {self.table} (event_id, topic, key, value)"  # noqa: S608
            " SELECT i, $1, k, v FROM unnest($2::text[], $3::text[], $4::bytea[]) x(i, k, v)"
            " ON CONFLICT (event_id) DO NOTHING",
            topic,
            [e.id for e in events],
            [e.bus_key for e in events],
            [e.to_bytes() for e in events],
        )

    async def publish_pending(self, engine: AsyncEngine, bus: Bus) -> int:
        """Publishes what is pending now. Stops after a batch that was not full: rows added
        since then set ``pending`` once committed, so ``run_forever`` comes back for them."""
        published = 0
        while True:
            async with engine.begin() as conn:
                # Custom plans for this transaction: a generic plan of the pending read, cached
                # while the table was small or its statistics said it was empty, scans and
                # sorts the whole table, and an outbox grows faster than statistics follow.
                if not await conn.scalar(
                    sa.text(
                        "SELECT pg_try_advisory_xact_lock(:k) AND"
                        " set_config('plan_cache_mode', 'force_custom_plan', true) <> ''"
                    ),
                    {"k": self.lock_key},
                ):
                    return published
                driver = await driver_connection(conn)
                rows = await driver.fetch(
                    f"SELECT id, topic, key, value FROM {self.table}"  # noqa: S608
                    " WHERE published_at IS NULL ORDER BY id LIMIT $1",
                    self.batch,
                )
                if not rows:
                    return published
                by_topic: dict[str, list[OutgoingMessage]] = {}
                for _, topic, key, value in rows:
                    by_topic.setdefault(topic, []).append(OutgoingMessage(key, value))
                for topic, messages in by_topic.items():
                    await bus.publish_batch(topic, messages)
                await driver.execute(
                    f"UPDATE {self.table} SET published_at = now()"  # noqa: S608
                    " WHERE id = ANY($1::bigint[])",
                    [row[0] for row in rows],
                )
            published += len(rows)
            if len(rows) < self.batch:
                return published

    async def prune(self, engine: AsyncEngine, keep_hours: float) -> None:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    f"DELETE FROM {self.table} WHERE published_at"  # noqa: S608
                    " < now() - make_interval(hours => :h)"
                ),
                {"h": keep_hours},
            )

    async def run_forever(self, engine: AsyncEngine, bus: Bus, idle_seconds: float = 1.0) -> None:
        """Publishes whenever ``pending`` is set, and at least every ``idle_seconds``."""
        while True:
            self.pending.clear()
            try:
                await self.publish_pending(engine, bus)
            except Exception:
                log.exception("outbox_publish_failed", table=self.table)
            await wait_event(self.pending, idle_seconds)
