"""Merges concurrent publishes into one Kafka record batch per partition.

aiokafka's per-message ``send`` costs more CPU than everything else ingest does, while one
record batch per publish floods the broker with tiny batches when many small publishes run at
once. The batcher gets both right: publishes that arrive while a flush is under way wait for
the next flush and share its batches; each caller returns once all of its messages are acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from kizuna.bus.base import BusUnavailable, OutgoingMessage, partition_for


@dataclass
class _Publish:
    topic: str
    messages: Sequence[OutgoingMessage]
    done: asyncio.Future[None]


def _settle(done: asyncio.Future[None], acked: asyncio.Future[Any]) -> None:
    if done.done():  # the caller gave up waiting
        return
    if acked.cancelled():
        done.set_exception(BusUnavailable("the publish was cancelled"))
    elif acked.exception() is not None:
        done.set_exception(acked.exception())  # type: ignore[arg-type]
    else:
        done.set_result(None)


class RecordBatcher:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self._pending: list[_Publish] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kafka-record-batcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for publish in self._pending:
            if not publish.done.done():
                publish.done.set_exception(BusUnavailable("the bus is closing"))
        self._pending.clear()

    async def publish(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Publish(topic, messages, done))
        self._wakeup.set()
        await done

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            publishes, self._pending = self._pending, []
            try:
                await self._flush(publishes)
            except Exception as error:
                for publish in publishes:
                    if not publish.done.done():
                        publish.done.set_exception(error)

    async def _flush(self, publishes: list[_Publish]) -> None:
        slots: dict[tuple[str, int], list[tuple[OutgoingMessage, int]]] = defaultdict(list)
        partitions: dict[str, list[int]] = {}
        for index, publish in enumerate(publishes):
            if publish.topic not in partitions:
                partitions[publish.topic] = sorted(
                    await self.producer.partitions_for(publish.topic)
                )
            known = partitions[publish.topic]
            for message in publish.messages:
                slot = (publish.topic, known[partition_for(message.key, len(known))])
                slots[slot].append((message, index))
        acks: list[list[asyncio.Future[Any]]] = [[] for _ in publishes]
        for (topic, partition), items in slots.items():
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
                if batch.append(**record) is None:
                    raise BusUnavailable(f"a message of {len(message.value)} bytes is too large")
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
        for index in members:
            acks[index].append(acked)
