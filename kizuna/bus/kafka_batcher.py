"""Merges concurrent publishes into one Kafka record batch per partition.

aiokafka's per-message ``send`` costs more CPU than everything else ingest does, while one
record batch per publish floods the broker with tiny batches when many small publishes run at
once. The batcher gets both right: publishes that arrive while a flush is under way wait for
the next flush and share its batches; each caller returns once all of its messages are acked.
Flushes run one after another, so per-key order holds across publishers.

A record batch the producer fails (for one, a batch that expired while its partition had no
leader, as happens when the broker restarts) leaves a gap in the idempotent producer's
sequence numbers for that partition; the broker then refuses every later batch there with
``OutOfOrderSequenceNumber`` and aiokafka never recovers. The batcher notes the first such
failure in ``failed``; the bus then replaces the producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from kizuna.bus.base import BusUnavailable, OutgoingMessage, partition_for

RECORD_OVERHEAD_BYTES = 128  # record and batch headers, generously


@dataclass
class _Publish:
    topic: str
    messages: Sequence[OutgoingMessage]
    done: asyncio.Future[None]


def _fail(publish: _Publish, error: BaseException) -> None:
    if not publish.done.done():
        publish.done.set_exception(copy.copy(error))


def _expire(done: asyncio.Future[None], timeout: float) -> None:
    if not done.done():
        done.set_exception(BusUnavailable(f"Kafka did not acknowledge within {timeout:.0f} s"))


def _settle(done: asyncio.Future[None], acked: asyncio.Future[Any]) -> None:
    error = None if acked.cancelled() else acked.exception()  # always retrieve it
    if done.done():  # the caller gave up waiting
        return
    if acked.cancelled():
        done.set_exception(BusUnavailable("the publish was cancelled"))
    elif error is not None:
        done.set_exception(error)
    else:
        done.set_result(None)


class RecordBatcher:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        max_record_bytes: int,
        timeout: float,
        max_pending_messages: int = 200_000,
    ) -> None:
        self.producer = producer
        self.max_record_bytes = max_record_bytes
        self.timeout = timeout
        self.max_pending_messages = max_pending_messages
        self._pending: list[_Publish] = []
        self._pending_messages = 0
        self._in_flight: list[_Publish] = []
        self._held: dict[str, list[_Publish]] = {}
        self._lookups: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failed: BaseException | None = None  # a record batch failed: replace the producer

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kafka-record-batcher")

    async def close(self) -> None:
        for task in [*self._lookups, *([self._task] if self._task else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        closing = BusUnavailable("the bus is closing")
        held = [publish for publishes in self._held.values() for publish in publishes]
        for publish in [*self._in_flight, *self._pending, *held]:
            _fail(publish, closing)
        self._pending.clear()
        self._held.clear()

    async def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        """Wait until every message is acknowledged; BusUnavailable if that takes too long.
        (The idempotent producer retries forever while the broker is away.)"""
        for message in messages:
            size = len(message.key) + len(message.value) + RECORD_OVERHEAD_BYTES
            if message.headers:
                size += sum(len(k) + len(v) for k, v in message.headers.items())
            if size > self.max_record_bytes:
                raise BusUnavailable(f"a message of {size} bytes is larger than Kafka takes")
        if self._pending_messages + len(messages) > self.max_pending_messages:
            raise BusUnavailable("too many messages are waiting for Kafka")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Publish(topic, messages, done))
        self._pending_messages += len(messages)
        self._wakeup.set()
        try:
            async with asyncio.timeout(self.timeout):
                await asyncio.shield(done)
        except TimeoutError as error:
            done.cancel()  # not sent if still queued; the caller has been told it failed
            raise BusUnavailable(
                f"Kafka did not acknowledge within {self.timeout:.0f} s"
            ) from error

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            self._in_flight, self._pending = self._pending, []
            self._pending_messages = 0
            by_topic: dict[str, list[_Publish]] = defaultdict(list)
            for publish in self._in_flight:
                if not publish.done.done():  # skip what callers abandoned
                    by_topic[publish.topic].append(publish)
            for topic, publishes in by_topic.items():
                if self._hold_until_known(topic, publishes):
                    continue
                try:
                    await self._flush(topic, publishes)
                except Exception as error:
                    for publish in publishes:
                        _fail(publish, error)
            self._in_flight = []

    def _hold_until_known(self, topic: str, publishes: list[_Publish]) -> bool:
        """A topic the producer has no metadata for yet (or that does not exist) is looked up
        aside, its publishes held in order, so that it delays no other topic."""
        if topic in self._held:
            self._held[topic].extend(publishes)
            return True
        if self.producer.client.cluster.partitions_for_topic(topic) is not None:
            return False
        self._held[topic] = list(publishes)
        lookup = asyncio.create_task(self._look_up(topic))
        self._lookups.add(lookup)
        lookup.add_done_callback(self._lookups.discard)
        return True

    async def _look_up(self, topic: str) -> None:
        try:
            await self.producer.partitions_for(topic)
        except Exception as error:
            for publish in self._held.pop(topic, []):
                _fail(publish, BusUnavailable(f"cannot publish to {topic}: {error}"))
            return
        held = self._held.pop(topic, [])
        self._pending[:0] = held
        self._pending_messages += sum(len(p.messages) for p in held)
        self._wakeup.set()

    async def _flush(self, topic: str, publishes: list[_Publish]) -> None:
        known = sorted(await self.producer.partitions_for(topic))
        slots: dict[int, list[tuple[OutgoingMessage, int]]] = defaultdict(list)
        for index, publish in enumerate(publishes):
            for message in publish.messages:
                slots[known[partition_for(message.key, len(known))]].append((message, index))
        acks: list[list[asyncio.Future[Any]]] = [[] for _ in publishes]
        for partition, items in slots.items():
            await self._send(topic, partition, items, acks)
        for publish, futures in zip(publishes, acks, strict=True):
            acked = asyncio.gather(*futures)
            acked.add_done_callback(functools.partial(_settle, publish.done))

    async def _send(
        self,
        topic: str,
        partition: int,
        items: list[tuple[OutgoingMessage, int]],
        acks: list[list[asyncio.Future[Any]]],
    ) -> None:
        batch, members = self.producer.create_batch(), set[int]()
        for message, index in items:
            record = {
                "timestamp": None,
                "key": message.key.encode(),
                "value": message.value,
                "headers": [(k, v.encode()) for k, v in message.headers.items()],
            }
            if batch.append(**record) is None:  # full: send it and start the next one
                await self._submit(batch, topic, partition, members, acks)
                batch, members = self.producer.create_batch(), set[int]()
                batch.append(**record)  # an empty batch takes any record publish() admitted
            members.add(index)
        await self._submit(batch, topic, partition, members, acks)

    async def _submit(
        self,
        batch: Any,
        topic: str,
        partition: int,
        members: set[int],
        acks: list[list[asyncio.Future[Any]]],
    ) -> None:
        acked = await self.producer.send_batch(batch, topic, partition=partition)
        acked.add_done_callback(self._note_failure)
        for index in members:
            acks[index].append(acked)

    def _note_failure(self, acked: asyncio.Future[Any]) -> None:
        if not acked.cancelled() and acked.exception() is not None and self.failed is None:
            self.failed = acked.exception()
