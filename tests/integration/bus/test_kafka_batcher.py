"""The Kafka record batcher's failure modes, against the real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from kizuna.bus import BusUnavailable, OutgoingMessage
from kizuna.bus.kafka import KafkaBus
from tests.integration.bus.test_contract import drain, numbered, values

pytestmark = pytest.mark.kafka


@pytest.fixture
async def bus(kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[KafkaBus]:
    bus = KafkaBus(kafka_bootstrap, topic_prefix, 2, publish_timeout_ms=2000)
    await bus.start()
    await bus.ensure_topics(["ok"])
    yield bus
    await bus.close()


async def test_an_oversized_message_fails_alone_and_the_partition_goes_on(bus: KafkaBus) -> None:
    with pytest.raises(BusUnavailable, match="larger than Kafka takes"):
        await bus.publish("ok", "key-1", b"x" * 1_500_000)
    await bus.publish_batch("ok", numbered(10, keys=1))
    consumer = bus.consumer("after-oversize", ["ok"])
    await consumer.start()
    try:
        assert sorted(values(await drain(consumer, 10))) == list(range(10))
    finally:
        await consumer.close()


async def test_a_missing_topic_fails_its_publish_only(bus: KafkaBus) -> None:
    missing = asyncio.create_task(bus.publish_batch("missing", numbered(3, keys=1)))
    await asyncio.sleep(0)
    await bus.publish_batch("ok", numbered(3, keys=1))
    with pytest.raises(BusUnavailable):
        await missing


async def test_close_answers_publishes_in_flight(bus: KafkaBus) -> None:
    stuck = asyncio.create_task(bus.publish_batch("missing", numbered(3, keys=1)))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await bus.close()
    with pytest.raises(BusUnavailable):
        await stuck
    assert time.monotonic() - started < 1.5


async def test_a_caller_that_gives_up_does_not_stop_the_others(bus: KafkaBus) -> None:
    impatient = [
        asyncio.create_task(asyncio.wait_for(bus.publish_batch("ok", numbered(5, keys=5)), 0))
        for _ in range(20)
    ]
    await asyncio.gather(*impatient, return_exceptions=True)
    await bus.publish_batch("ok", [OutgoingMessage("late", b"1000")])
    consumer = bus.consumer("after-impatience", ["ok"])
    await consumer.start()
    try:
        seen = values(await drain(consumer, 1, timeout=30))
        seen += values(await drain(consumer, 0))
    finally:
        await consumer.close()
    assert 1000 in seen
