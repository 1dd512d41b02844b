"""The bus on Apache Kafka: idempotent producer with acks=all, manual commits."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import timedelta

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from kizuna import metrics
from kizuna.aio import wait_event
from kizuna.bus.base import (
    Bus,
    BusMessage,
    BusUnavailable,
    Consumer,
    OutgoingMessage,
    next_offsets,
)
from kizuna.bus.kafka_batcher import RecordBatcher

log = structlog.get_logger(__name__)


TOPIC_ALREADY_EXISTS = 36
MAX_POLL_INTERVAL_MS = 900_000  # a handler retrying longer than this loses its partitions
REBALANCE_TIMEOUT_MS = 60_000  # how long a rebalance waits for the batches in hand to finish
MAX_RECORD_BATCH_BYTES = 512 * 1024  # well under the broker's 1 MB message.max.bytes


def _text(raw: bytes | None) -> str:
    # Messages written by other producers may carry anything: never fail to read them.
    return "" if raw is None else raw.decode(errors="replace")


def _decode_headers(raw: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    return {name: _text(value) for name, value in raw or ()}


class KafkaBus(Bus):
    def __init__(
        self,
        bootstrap_servers: str,
        topic_prefix: str,
        partitions: int,
        *,
        replication_factor: int = 1,
        session_timeout_ms: int = 10_000,
        publish_timeout_ms: int = 10_000,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        super().__init__(topic_prefix, partitions, retention)
        self.bootstrap_servers = bootstrap_servers
        self.replication_factor = replication_factor
        self.session_timeout_ms = session_timeout_ms
        self.publish_timeout_ms = publish_timeout_ms
        self._producer: AIOKafkaProducer | None = None
        self._batcher: RecordBatcher | None = None
        self._replacing = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._producer, self._batcher = await self._new_producer()

    async def _new_producer(self) -> tuple[AIOKafkaProducer, RecordBatcher]:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=0,  # the RecordBatcher already merges concurrent publishes
            request_timeout_ms=self.publish_timeout_ms,
            max_batch_size=MAX_RECORD_BATCH_BYTES,
        )
        try:
            await producer.start()
        except KafkaError as error:
            await producer.stop()
            raise BusUnavailable(f"cannot reach Kafka at {self.bootstrap_servers}") from error
        batcher = RecordBatcher(
            producer,
            max_record_bytes=MAX_RECORD_BATCH_BYTES,
            timeout=self.publish_timeout_ms / 1000,
        )
        batcher.start()
        return producer, batcher

    async def _replace_failed_producer(self) -> None:
        """A producer that lost a record batch can never send on that partition again (see
        kafka_batcher): publish through a new one, with new sequence numbers. The old one
        delivers or fails what it still holds, then stops."""
        async with self._replacing:
            old_producer, old_batcher = self._producer, self._batcher
            if old_producer is None or old_batcher is None or old_batcher.failed is None:
                return  # replaced meanwhile
            self._producer, self._batcher = await self._new_producer()
            log.warning("kafka_producer_replaced", error=repr(old_batcher.failed))
            retiring = asyncio.create_task(self._retire(old_producer, old_batcher))
            self._retiring.add(retiring)
            retiring.add_done_callback(self._retiring.discard)

    @staticmethod
    async def _retire(producer: AIOKafkaProducer, batcher: RecordBatcher) -> None:
        try:
            await producer.stop()  # its batches are acknowledged or fail, and so their publishes
        except KafkaError as error:
            log.warning("kafka_producer_stop_failed", error=repr(error))
        await batcher.close()

    async def close(self) -> None:
        async with self._replacing:  # a replacement under way finishes first
            if self._batcher is not None:
                await self._batcher.close()
                self._batcher = None
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None
        if self._retiring:
            _, stuck = await asyncio.wait(self._retiring, timeout=self.publish_timeout_ms / 1000)
            for task in stuck:
                task.cancel()

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("KafkaBus.start() was not called")
        return self._producer

    async def ensure_topics(self, topics: Iterable[str]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(
                    self.full_name(t),
                    self.partitions,
                    self.replication_factor,
                    topic_configs={"retention.ms": str(int(self.retention.total_seconds() * 1000))},
                )
                for t in topics
                if self.full_name(t) not in existing
            ]
            if missing:
                response = await admin.create_topics(missing)
                failed = [
                    f"{error[0]}: {error[-1] if len(error) > 2 else error[1]}"
                    for error in response.topic_errors
                    if error[1] not in (0, TOPIC_ALREADY_EXISTS)
                ]
                if failed:
                    raise BusUnavailable(f"Kafka refused to create topics: {'; '.join(failed)}")
                await wait_for_leaders(admin, [t.name for t in missing])
        finally:
            await admin.close()

    async def publish_batch(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        if self._batcher is not None and self._batcher.failed is not None:
            await self._replace_failed_producer()
        if self._batcher is None:
            raise RuntimeError("KafkaBus.start() was not called")
        try:
            await self._batcher.publish(self.full_name(topic), messages)
        except KafkaError as error:
            raise BusUnavailable(f"Kafka did not take the messages: {error}") from error
        metrics.MESSAGES_PUBLISHED.labels(topic).inc(len(messages))

    def consumer(self, group: str, topics: Sequence[str]) -> Consumer:
        return KafkaConsumer(self, group, topics)

    async def ping(self) -> None:
        try:
            await self.producer.client.fetch_all_metadata()
        except KafkaError as error:
            raise BusUnavailable(str(error)) from error


class _WaitForIdle(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, idle: asyncio.Event) -> None:
        self.idle = idle

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if not await wait_event(self.idle, REBALANCE_TIMEOUT_MS / 1000 - 5):
            log.warning("rebalance_while_batch_still_running", partitions=len(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("partitions_assigned", partitions=len(assigned))


class KafkaConsumer(Consumer):
    """A group member. Before giving partitions up in a rebalance, it lets the batch in hand
    finish and commit, so a partition never has two members processing it at once."""

    def __init__(self, bus: KafkaBus, group: str, topics: Sequence[str]) -> None:
        self.bus = bus
        self._topics = [bus.full_name(t) for t in topics]
        self._idle = asyncio.Event()
        self._idle.set()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bus.bootstrap_servers,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=bus.session_timeout_ms,
            heartbeat_interval_ms=max(bus.session_timeout_ms // 3, 500),
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
            request_timeout_ms=REBALANCE_TIMEOUT_MS + 5_000,
        )

    async def start(self) -> None:
        self._consumer.subscribe(self._topics, listener=_WaitForIdle(self._idle))
        await self._consumer.start()

    async def close(self) -> None:
        await self._consumer.stop()

    async def fetch(self, max_records: int, timeout: float) -> list[BusMessage]:
        records = await self._consumer.getmany(
            timeout_ms=int(timeout * 1000), max_records=max_records
        )
        batch = [
            BusMessage(
                topic=self.bus.logical_name(record.topic),
                partition=record.partition,
                offset=record.offset,
                key=_text(record.key),
                value=record.value if record.value is not None else b"",
                headers=_decode_headers(record.headers),
            )
            for partition_records in records.values()
            for record in partition_records
        ]
        if batch:
            self._idle.clear()  # set again once committed
        return batch

    async def commit(self, messages: Sequence[BusMessage]) -> None:
        offsets = {
            TopicPartition(self.bus.full_name(topic), partition): offset
            for (topic, partition), offset in next_offsets(messages).items()
        }
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # The group moved on without us: the new owner will process these again.
            log.warning("commit_failed_after_rebalance", error=str(error))
        finally:
            self._idle.set()

    def assignment(self) -> set[tuple[str, int]]:
        return {
            (self.bus.logical_name(tp.topic), tp.partition) for tp in self._consumer.assignment()
        }

    async def lag(self) -> int:
        total = 0
        for tp in list(self._consumer.assignment()):
            # A rebalance during one of the awaits below may have taken it away; aiokafka then
            # asserts in ``highwater``.
            if tp not in self._consumer.assignment():
                continue
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            committed = await self._consumer.committed(tp)
            if committed is None:
                committed = (await self._consumer.beginning_offsets([tp]))[tp]
            total += highwater - committed
        return total


async def wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    """New topics take a moment to elect partition leaders; publishing before that only
    earns retries and warnings."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while loop.time() < deadline:
        described = await admin.describe_topics(names)
        if all(
            topic.get("error_code", 0) == 0
            and topic["partitions"]
            and all(p.get("leader", -1) >= 0 for p in topic["partitions"])
            for topic in described
        ):
            return
        await asyncio.sleep(0.1)
    raise BusUnavailable(f"topics {names} have no partition leaders after 15 s")
