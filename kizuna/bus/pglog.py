"""The bus as a durable log in PostgreSQL, for the embedded default and small installs.

Each topic has a fixed number of partitions. A publisher takes the partition's row lock to
allocate offsets, so offsets commit in order. A consumer-group member holds a session advisory
lock for each partition it owns (and one for its own liveness): when its connection dies,
PostgreSQL releases them and the remaining members take the partitions over. An append
notifies its topic's channel; a process's consumers share one listening session
(``pglisten``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta

import asyncpg

from kizuna import metrics
from kizuna.aio import wait_event
from kizuna.bus.base import (
    Bus,
    BusMessage,
    BusUnavailable,
    Consumer,
    OutgoingMessage,
    next_offsets,
    partition_for,
)
from kizuna.bus.group_append import GroupAppender
from kizuna.bus.pglisten import CONNECTION_ERRORS, KEEPALIVE, SharedListener, notify_channel

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """The pool's connections only ever run single statements and managed transactions: they
    never LISTEN, SET, or take session locks, so there is nothing to reset when one is
    released. asyncpg's default reset costs a round trip per publish. (An open transaction is
    still rolled back by the pool itself.)"""


class PostgresLogBus(Bus):
    def __init__(
        self,
        dsn: str,
        topic_prefix: str,
        partitions: int,
        *,
        rebalance_interval: float = 0.5,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        super().__init__(topic_prefix, partitions, retention)
        self.dsn = dsn
        self.rebalance_interval = rebalance_interval
        self._pool: asyncpg.Pool | None = None
        self._partitions: dict[str, int] = {}  # a topic's partitions never change
        self._appender = GroupAppender(self._append_now)
        self.listener = SharedListener(dsn)

    async def start(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=10, reset=_keep_session
            )
        except CONNECTION_ERRORS as error:
            raise BusUnavailable(f"cannot reach the PostgreSQL event log: {error}") from error

    async def close(self) -> None:
        await self._appender.close()
        await self.listener.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("PostgresLogBus.start() was not called")
        return self._pool

    async def ensure_topics(self, topics: Iterable[str]) -> None:
        names = [self.full_name(t) for t in topics]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO bus_topics (topic, partitions) SELECT unnest($1::text[]), $2"
                " ON CONFLICT (topic) DO NOTHING",
                names,
                self.partitions,
            )
            await conn.execute(
                "INSERT INTO bus_partitions (topic, partition)"
                " SELECT t.topic, p FROM bus_topics t, generate_series(0, t.partitions - 1) p"
                " WHERE t.topic = ANY($1::text[]) ON CONFLICT DO NOTHING",
                names,
            )

    async def topic_partitions(self, conn: Connection, topic: str) -> int:
        name = self.full_name(topic)
        if (known := self._partitions.get(name)) is not None:
            return known
        count = await conn.fetchval("SELECT partitions FROM bus_topics WHERE topic = $1", name)
        if count is None:
            raise LookupError(f"topic {topic!r} does not exist; run ensure_topics first")
        self._partitions[name] = int(count)
        return int(count)

    async def publish_batch(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        await self._appender.publish(topic, messages)
        metrics.MESSAGES_PUBLISHED.labels(topic).inc(len(messages))

    async def _append_now(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        try:
            async with self.pool.acquire() as conn:
                partitions = await self.topic_partitions(conn, topic)
                await self._append(conn, self.full_name(topic), partitions, messages)
        except CONNECTION_ERRORS as error:
            raise BusUnavailable(
                f"the PostgreSQL event log did not take the messages: {error}"
            ) from error

    async def append_in_transaction(
        self, conn: Connection, topic: str, messages: Sequence[OutgoingMessage]
    ) -> None:
        """Appends inside the caller's open transaction, on a connection to the log's own
        database: the messages, and the notification, count only if that transaction commits.
        The topic's partition locks are held until it ends, so append last, and in topic-name
        order when a transaction appends to several topics. Not counted as published: only
        the caller knows whether it committed."""
        if not messages:
            return
        partitions = await self.topic_partitions(conn, topic)
        await self._append(conn, self.full_name(topic), partitions, messages)

    @staticmethod
    async def _append(
        conn: Connection, topic: str, partitions: int, messages: Sequence[OutgoingMessage]
    ) -> None:
        """One statement, its own transaction, for every partition the messages go to: each
        partition's next offset is moved on (in partition order, so concurrent publishers never
        deadlock), the messages take the offsets it freed, in the order given, and consumers
        of the topic are notified. The partition locks are held from the statement to its
        commit, with no round trip to the client in between: publishers of a topic queue on
        them, so that time is the topic's ceiling."""
        counts: dict[int, int] = defaultdict(int)
        slots: list[tuple[int, int]] = []
        for message in messages:
            partition = partition_for(message.key, partitions)
            slots.append((partition, counts[partition]))
            counts[partition] += 1
        ordered = sorted(counts)
        await conn.execute(
            "WITH c AS (SELECT * FROM unnest($2::int[], $3::bigint[]) AS c(partition, n)),"
            " locked AS (SELECT partition FROM bus_partitions"
            "  WHERE topic = $1 AND partition = ANY($2::int[]) ORDER BY partition FOR UPDATE),"
            " moved AS (UPDATE bus_partitions p SET next_offset = p.next_offset + c.n"
            "  FROM c JOIN locked USING (partition)"
            "  WHERE p.topic = $1 AND p.partition = c.partition"
            "  RETURNING p.partition, p.next_offset - c.n AS first),"
            ' appended AS (INSERT INTO bus_messages (topic, partition, "offset", key, value,'
            " headers) SELECT $1, m.partition, moved.first + m.i, m.k, m.v, m.h::jsonb"
            " FROM unnest($4::int[], $5::bigint[], $6::text[], $7::bytea[], $8::text[])"
            " AS m(partition, i, k, v, h) JOIN moved USING (partition))"
            " SELECT pg_notify($9, '')",  # a data-modifying WITH runs whether or not it is read
            topic,
            ordered,
            [counts[p] for p in ordered],
            [partition for partition, _ in slots],
            [index for _, index in slots],
            [m.key for m in messages],
            [m.value for m in messages],
            [json.dumps(dict(m.headers)) if m.headers else None for m in messages],
            notify_channel(topic),
        )

    def consumer(self, group: str, topics: Sequence[str]) -> Consumer:
        return PostgresLogConsumer(self, group, topics)

    async def enforce_retention(self, chunk: int = 10_000) -> int:
        """Like Kafka's retention.ms: old messages go whether or not a group has read them."""
        deleted = 0
        while True:
            result = await self.pool.execute(
                "DELETE FROM bus_messages WHERE ctid = ANY(ARRAY("
                "  SELECT ctid FROM bus_messages WHERE appended_at < now() - $1::interval"
                "  LIMIT $2))",
                self.retention,
                chunk,
            )
            count = int(result.split()[-1])
            deleted += count
            if count < chunk:
                return deleted

    async def ping(self) -> None:
        try:
            await self.pool.fetchval("SELECT 1 FROM bus_topics LIMIT 1")
        except CONNECTION_ERRORS as error:
            raise BusUnavailable(str(error)) from error


class PostgresLogConsumer(Consumer):
    def __init__(self, bus: PostgresLogBus, group: str, topics: Sequence[str]) -> None:
        self.bus = bus
        self.group = group
        self.topics = [bus.full_name(t) for t in topics]
        self._channels = [notify_channel(t) for t in self.topics]
        self.member_id = uuid.uuid4().hex
        self._conn: asyncpg.Connection | None = None
        self._wakeup = asyncio.Event()
        self._owned: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset to read
        self._last_rebalance = -math.inf

    @property
    def conn(self) -> asyncpg.Connection:
        if self._conn is None:
            raise RuntimeError("consumer not started")
        return self._conn

    async def start(self) -> None:
        self._conn = await asyncpg.connect(
            self.bus.dsn, command_timeout=60, server_settings=KEEPALIVE
        )
        await self.conn.execute(
            "SELECT pg_advisory_lock(hashtext('kizuna-member'), hashtext($1))", self.member_id
        )
        await self.conn.execute(
            "INSERT INTO bus_group_members (group_id, member_id, topics) VALUES ($1, $2, $3)",
            self.group,
            self.member_id,
            self.topics,
        )
        await self.bus.listener.subscribe(self._channels, self._wakeup)

    async def close(self) -> None:
        if self._conn is None:
            return
        await self.bus.listener.unsubscribe(self._channels, self._wakeup)
        with contextlib.suppress(*CONNECTION_ERRORS):
            await self._conn.execute(
                "DELETE FROM bus_group_members WHERE group_id = $1 AND member_id = $2",
                self.group,
                self.member_id,
            )
        with contextlib.suppress(*CONNECTION_ERRORS):
            await self._conn.close(timeout=5)
        self._conn = None
        self._owned.clear()

    async def fetch(self, max_records: int, timeout: float) -> list[BusMessage]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if loop.time() - self._last_rebalance >= self.bus.rebalance_interval:
                await self._rebalance()
            self._wakeup.clear()
            messages = await self._read(max_records)
            remaining = deadline - loop.time()
            if messages or remaining <= 0:
                return messages
            await self.bus.listener.ensure()
            await wait_event(self._wakeup, min(remaining, self.bus.rebalance_interval))

    async def _read(self, max_records: int) -> list[BusMessage]:
        if not self._owned:
            return []
        slots = sorted(self._owned)
        per_partition = max(1, max_records // len(slots))
        rows = await self.conn.fetch(
            'SELECT m.topic, m.partition, m."offset", m.key, m.value, m.headers::text'
            " FROM unnest($1::text[], $2::int[], $3::bigint[]) AS o(topic, partition, pos)"
            " CROSS JOIN LATERAL (SELECT * FROM bus_messages b WHERE b.topic = o.topic"
            '   AND b.partition = o.partition AND b."offset" >= o.pos'
            '   ORDER BY b."offset" LIMIT $4) m'
            ' ORDER BY m.topic, m.partition, m."offset"',
            [t for t, _ in slots],
            [p for _, p in slots],
            [self._owned[s] for s in slots],
            per_partition,
        )
        messages = [
            BusMessage(
                topic=self.bus.logical_name(row["topic"]),
                partition=row["partition"],
                offset=row["offset"],
                key=row["key"],
                value=bytes(row["value"]),
                headers=json.loads(row["headers"]) if row["headers"] else {},
            )
            for row in rows
        ]
        for message in messages:
            self._owned[(self.bus.full_name(message.topic), message.partition)] = message.offset + 1
        return messages

    async def commit(self, messages: Sequence[BusMessage]) -> None:
        offsets = next_offsets(messages)
        await self.conn.execute(
            "INSERT INTO bus_group_offsets (group_id, topic, partition, committed)"
            " SELECT $1, t, p, o FROM unnest($2::text[], $3::int[], $4::bigint[]) AS x(t, p, o)"
            " ON CONFLICT (group_id, topic, partition)"
            " DO UPDATE SET committed = GREATEST(bus_group_offsets.committed, EXCLUDED.committed)",
            self.group,
            [self.bus.full_name(t) for t, _ in offsets],
            [p for _, p in offsets],
            list(offsets.values()),
        )

    def assignment(self) -> set[tuple[str, int]]:
        return {(self.bus.logical_name(topic), partition) for topic, partition in self._owned}

    async def lag(self) -> int:
        if not self._owned:
            return 0
        slots = sorted(self._owned)
        value = await self.conn.fetchval(
            "SELECT coalesce(sum(p.next_offset - coalesce(g.committed, 0)), 0)"
            " FROM unnest($1::text[], $2::int[]) AS o(topic, partition)"
            " JOIN bus_partitions p USING (topic, partition)"
            " LEFT JOIN bus_group_offsets g ON g.group_id = $3"
            "   AND g.topic = o.topic AND g.partition = o.partition",
            [t for t, _ in slots],
            [p for _, p in slots],
            self.group,
        )
        return int(value)

    async def _rebalance(self) -> None:
        self._last_rebalance = asyncio.get_running_loop().time()
        conn = self.conn
        # A member whose liveness lock we can take has lost its connection: forget it.
        await conn.execute(
            "DELETE FROM bus_group_members WHERE group_id = $1 AND member_id <> $2"
            " AND pg_try_advisory_xact_lock(hashtext('kizuna-member'), hashtext(member_id))",
            self.group,
            self.member_id,
        )
        members = await conn.fetch(
            "SELECT member_id, topics FROM bus_group_members WHERE group_id = $1"
            " ORDER BY member_id",
            self.group,
        )
        partitions = await conn.fetch(
            "SELECT topic, partition FROM bus_partitions WHERE topic = ANY($1::text[])"
            " ORDER BY topic, partition",
            self.topics,
        )
        wanted = set()
        for topic in self.topics:
            # Each topic's partitions go round-robin over the members subscribed to it, so
            # members with different subscriptions (a rolling deploy) leave nothing unowned.
            subscribers = [m["member_id"] for m in members if topic in m["topics"]]
            if self.member_id not in subscribers:
                subscribers.append(self.member_id)
                subscribers.sort()
            me = subscribers.index(self.member_id)
            mine = [r["partition"] for r in partitions if r["topic"] == topic]
            wanted |= {(topic, p) for i, p in enumerate(mine) if i % len(subscribers) == me}
        for slot in [s for s in self._owned if s not in wanted]:
            await conn.execute(
                "SELECT pg_advisory_unlock(hashtext($1), $2)", self._lock_name(slot[0]), slot[1]
            )
            del self._owned[slot]
        for slot in sorted(wanted - self._owned.keys()):
            got = await conn.fetchval(
                "SELECT pg_try_advisory_lock(hashtext($1), $2)", self._lock_name(slot[0]), slot[1]
            )
            if got:
                committed = await conn.fetchval(
                    "SELECT committed FROM bus_group_offsets"
                    " WHERE group_id = $1 AND topic = $2 AND partition = $3",
                    self.group,
                    slot[0],
                    slot[1],
                )
                self._owned[slot] = committed or 0

    def _lock_name(self, topic: str) -> str:
        return f"kizuna-partition:{self.group}:{topic}"
