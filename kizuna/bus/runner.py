"""Runs a handler over a consumer: decode, dead-letter poison, retry, commit after success."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from kizuna import metrics, topics
from kizuna.aio import wait_event
from kizuna.bus.base import Bus, BusMessage, Consumer, OutgoingMessage

T = TypeVar("T")
LAG_REPORT_SECONDS = 5.0
log = structlog.get_logger(__name__)


class PoisonMessage(Exception):
    """Raised by a handler for a message that can never be processed: it goes to dead-letter."""


@dataclass(frozen=True, slots=True)
class Decoded(Generic[T]):
    message: BusMessage
    value: T


Decoder = Callable[[BusMessage], T]
Handler = Callable[[Sequence[Decoded[T]]], Awaitable[None]]


class ConsumerRunner(Generic[T]):
    def __init__(
        self,
        bus: Bus,
        group: str,
        topic_names: Sequence[str],
        decode: Decoder[T],
        handle: Handler[T],
        *,
        batch_size: int = 500,
        poll_timeout: float = 1.0,
        max_backoff: float = 5.0,
    ) -> None:
        self.bus = bus
        self.group = group
        self.topic_names = list(topic_names)
        self.decode = decode
        self.handle = handle
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.max_backoff = max_backoff
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consumer: Consumer | None = None
        self.ready = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"consumer:{self.group}")

    async def stop(self) -> None:
        """Finish the batch in hand, commit it, leave the group."""
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def run(self) -> None:
        backoff = 0.2
        while not self._stopping.is_set():
            consumer = self.bus.consumer(self.group, self.topic_names)
            try:
                await consumer.start()
                self._consumer = consumer
                self.ready.set()
                backoff = 0.2
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer_failed", group=self.group)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            finally:
                self._consumer = None
                with contextlib.suppress(Exception):
                    await consumer.close()

    async def lag(self) -> int | None:
        consumer = self._consumer
        return None if consumer is None else await consumer.lag()

    async def _consume(self, consumer: Consumer) -> None:
        last_lag_report = -math.inf
        while not self._stopping.is_set():
            batch = await consumer.fetch(self.batch_size, self.poll_timeout)
            if time.monotonic() - last_lag_report > LAG_REPORT_SECONDS:
                last_lag_report = time.monotonic()  # the batch in hand counts as lag
                await self._report_lag(consumer)
            if batch:
                await self._process(batch)
                await consumer.commit(batch)

    async def _report_lag(self, consumer: Consumer) -> None:
        """A metric only: failing to read it (say, during a rebalance) must not drop the batch
        in hand and restart the consumer, which would rebalance the group again."""
        try:
            metrics.CONSUMER_LAG.labels(self.group).set(await consumer.lag())
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("consumer_lag_unavailable", group=self.group, error=repr(error))

    async def _process(self, batch: list[BusMessage]) -> None:
        decoded: list[Decoded[T]] = []
        for message in batch:
            try:
                decoded.append(Decoded(message, self.decode(message)))
            except Exception as error:
                await self._dead_letter(message, f"decode: {error}")
        if decoded:
            await self._handle_with_retry(decoded)

    async def _handle_with_retry(self, decoded: list[Decoded[T]]) -> None:
        try:
            await self._retry_until_done(decoded)
        except PoisonMessage as error:
            if len(decoded) == 1:
                await self._dead_letter(decoded[0].message, f"handler: {error}")
                return
            for item in decoded:
                await self._handle_with_retry([item])

    async def _retry_until_done(self, decoded: list[Decoded[T]]) -> None:
        backoff = 0.1
        while True:
            try:
                with metrics.CONSUMER_BATCH_SECONDS.labels(self.group).time():
                    await self.handle(decoded)
            except PoisonMessage:
                raise
            except Exception:
                metrics.MESSAGES_FAILED.labels(self.group).inc(len(decoded))
                log.exception("handler_failed_will_retry", group=self.group, size=len(decoded))
                if self._stopping.is_set():
                    raise
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            else:
                metrics.MESSAGES_PROCESSED.labels(self.group).inc(len(decoded))
                return

    async def _dead_letter(self, message: BusMessage, reason: str) -> None:
        metrics.MESSAGES_DEAD_LETTERED.labels(self.group).inc()
        log.warning(
            "dead_lettered",
            group=self.group,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            reason=reason,
        )
        headers = {
            **message.headers,
            "dlq.group": self.group,
            "dlq.topic": message.topic,
            "dlq.partition": str(message.partition),
            "dlq.offset": str(message.offset),
            "dlq.reason": reason[:1000],
        }
        await self.bus.publish_batch(
            topics.DEAD_LETTER, [OutgoingMessage(message.key, message.value, headers)]
        )

    async def _sleep(self, seconds: float) -> None:
        await wait_event(self._stopping, seconds)
