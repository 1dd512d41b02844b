"""The bus interface: durable publish, consumer groups with explicit commit, per-key order."""

from __future__ import annotations

import abc
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    key: str
    value: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BusMessage:
    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class BusUnavailable(Exception):
    """The bus could not make a message durable; the caller must not acknowledge it."""


def partition_for(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


def next_offsets(messages: Iterable[BusMessage]) -> dict[tuple[str, int], int]:
    """The offset to commit per (topic, partition): one past the highest message seen."""
    positions: dict[tuple[str, int], int] = {}
    for message in messages:
        slot = (message.topic, message.partition)
        positions[slot] = max(positions.get(slot, 0), message.offset + 1)
    return positions


class Consumer(abc.ABC):
    """One member of a consumer group. Messages of one partition arrive in offset order."""

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def fetch(self, max_records: int, timeout: float) -> list[BusMessage]: ...

    @abc.abstractmethod
    async def commit(self, messages: Sequence[BusMessage]) -> None:
        """Mark these messages (and all before them in their partitions) as processed."""

    @abc.abstractmethod
    def assignment(self) -> set[tuple[str, int]]:
        """The (topic, partition) pairs this member owns right now."""

    @abc.abstractmethod
    async def lag(self) -> int:
        """Messages in the assigned partitions not yet committed."""


class Bus(abc.ABC):
    def __init__(
        self, topic_prefix: str, partitions: int, retention: timedelta = timedelta(days=7)
    ) -> None:
        self.topic_prefix = topic_prefix
        self.partitions = partitions
        self.retention = retention

    def full_name(self, topic: str) -> str:
        return f"{self.topic_prefix}{topic}"

    def logical_name(self, full_name: str) -> str:
        return full_name.removeprefix(self.topic_prefix)

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ensure_topics(self, topics: Iterable[str]) -> None: ...

    @abc.abstractmethod
    async def publish_batch(self, topic: str, messages: Sequence[OutgoingMessage]) -> None:
        """Return only once every message is durable; raise BusUnavailable otherwise."""

    async def publish(
        self, topic: str, key: str, value: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        await self.publish_batch(topic, [OutgoingMessage(key, value, headers or {})])

    @abc.abstractmethod
    def consumer(self, group: str, topics: Sequence[str]) -> Consumer: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise if the bus cannot be reached."""

    async def enforce_retention(self) -> int:
        """Delete messages older than the retention period; return how many. Kafka brokers do
        this themselves, so the default does nothing."""
        return 0
