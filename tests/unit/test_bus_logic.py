"""The consumer runner's rules, on a small in-memory fake of the bus."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

import pytest

from kizuna import topics
from kizuna.bus import Bus, BusMessage, ConsumerRunner, Decoded, OutgoingMessage, PoisonMessage
from kizuna.bus.base import Consumer, next_offsets, partition_for
from kizuna.bus.factory import bus_from_settings
from kizuna.bus.kafka import KafkaBus
from kizuna.bus.pglog import PostgresLogBus
from kizuna.settings import KizunaSettings


class FakeConsumer(Consumer):
    def __init__(self, bus: FakeBus) -> None:
        self.bus = bus

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def fetch(self, max_records: int, timeout: float) -> list[BusMessage]:
        batch, self.bus.pending = self.bus.pending[:max_records], self.bus.pending[max_records:]
        if not batch:
            await asyncio.sleep(0.01)
        return batch

    async def commit(self, messages: Sequence[BusMessage]) -> None:
        self.bus.committed.extend(messages)

    def assignment(self) -> set[tuple[str, int]]:
        return {("in", 0)}

    async def lag(self) -> int:
        return len(self.bus.pending)


class FakeBus(Bus):
    def __init__(self, values: Iterable[bytes]) -> None:
        super().__init__("", 1)
        self.pending = [BusMessage("in", 0, i, "k", v) for i, v in enumerate(values)]
        self.committed: list[BusMessage] = []
        self.published: dict[str, list[OutgoingMessage]] = {}

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ensure_topics(self, topics: Iterable[str]) -> None: ...

    async def publish_batch(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        self.published.setdefault(topic, []).extend(messages)

    def consumer(self, group: str, topics: Sequence[str]) -> Consumer:
        return FakeConsumer(self)

    async def ping(self) -> None: ...


async def run_until_committed(bus: FakeBus, runner: ConsumerRunner[int], count: int) -> None:
    runner.start()
    async with asyncio.timeout(5):
        while len(bus.committed) < count:
            await asyncio.sleep(0.01)
    await runner.stop()


async def test_poison_raised_by_handler_dead_letters_only_that_message() -> None:
    bus = FakeBus([b"1", b"13", b"2"])
    handled: list[int] = []

    async def handle(batch: Sequence[Decoded[int]]) -> None:
        if any(item.value == 13 for item in batch):
            raise PoisonMessage("unlucky")
        handled.extend(item.value for item in batch)

    runner = ConsumerRunner(bus, "g", ["in"], lambda m: int(m.value), handle)
    await run_until_committed(bus, runner, 3)
    assert handled == [1, 2]
    [letter] = bus.published[topics.DEAD_LETTER]
    assert letter.value == b"13"
    assert letter.headers["dlq.reason"] == "handler: unlucky"


async def test_undecodable_message_is_dead_lettered_and_rest_handled() -> None:
    bus = FakeBus([b"1", b"x", b"3"])
    handled: list[int] = []

    async def handle(batch: Sequence[Decoded[int]]) -> None:
        handled.extend(item.value for item in batch)

    runner = ConsumerRunner(bus, "g", ["in"], lambda m: int(m.value), handle)
    await run_until_committed(bus, runner, 3)
    assert handled == [1, 3]
    assert [m.value for m in bus.published[topics.DEAD_LETTER]] == [b"x"]


async def test_a_lag_that_cannot_be_read_neither_stops_nor_restarts_the_consumer() -> None:
    bus = FakeBus([b"1", b"2", b"3"])
    started: list[FakeConsumer] = []

    class NoLag(FakeConsumer):
        async def start(self) -> None:
            started.append(self)

        async def lag(self) -> int:
            raise AssertionError("Partition is not assigned")  # as aiokafka mid-rebalance

    bus.consumer = lambda group, topics: NoLag(bus)  # type: ignore[method-assign]
    handled: list[int] = []

    async def handle(batch: Sequence[Decoded[int]]) -> None:
        handled.extend(item.value for item in batch)

    runner = ConsumerRunner(bus, "g", ["in"], lambda m: int(m.value), handle, batch_size=1)
    await run_until_committed(bus, runner, 3)
    assert handled == [1, 2, 3]
    assert len(started) == 1, "the consumer was not restarted"


def test_next_offsets_is_one_past_the_highest_per_partition() -> None:
    messages = [
        BusMessage("a", 0, 5, "k", b""),
        BusMessage("a", 0, 3, "k", b""),
        BusMessage("a", 1, 0, "k", b""),
    ]
    assert next_offsets(messages) == {("a", 0): 6, ("a", 1): 1}


def test_partition_is_stable_and_in_range() -> None:
    assert partition_for("ws:user", 8) == partition_for("ws:user", 8)
    assert {partition_for(f"ws:{i}", 8) for i in range(200)} == set(range(8))


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("postgres", PostgresLogBus),
        ("kafka://127.0.0.1:9092", KafkaBus),
        ("postgresql://u@h/db", PostgresLogBus),
    ],
)
def test_bus_is_chosen_by_one_setting(url: str, kind: type) -> None:
    assert isinstance(bus_from_settings(KizunaSettings(bus_url=url)), kind)


def test_unknown_bus_url_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="KIZUNA_BUS_URL"):
        bus_from_settings(KizunaSettings(bus_url="rabbitmq://x"))


def test_settings_come_from_kizuna_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIZUNA_BUS_PARTITIONS", "12")
    monkeypatch.setenv("KIZUNA_ADMIN_KEY", "s3cret-admin")
    settings = KizunaSettings()
    assert settings.bus_partitions == 12
    assert "s3cret-admin" not in repr(settings)
