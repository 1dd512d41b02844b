from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from kizuna.bus import Bus
from kizuna.bus.kafka import KafkaBus
from kizuna.bus.pglog import PostgresLogBus

PARTITIONS = 4
TOPIC = "contract"


@dataclass
class BusTarget:
    """How to reach one bus, so tests (and subprocesses) can open several clients on it."""

    kind: str
    database_url: str
    kafka_bootstrap: str | None
    topic_prefix: str

    @property
    def bus_url(self) -> str:
        return f"kafka://{self.kafka_bootstrap}" if self.kind == "kafka" else "postgres"

    def new_bus(self) -> Bus:
        if self.kind == "kafka":
            assert self.kafka_bootstrap
            return KafkaBus(
                self.kafka_bootstrap, self.topic_prefix, PARTITIONS, session_timeout_ms=3000
            )
        return PostgresLogBus(
            self.database_url, self.topic_prefix, PARTITIONS, rebalance_interval=0.2
        )


@pytest.fixture(params=["postgres", pytest.param("kafka", marks=pytest.mark.kafka)])
def target(request: pytest.FixtureRequest, database_url: str, topic_prefix: str) -> BusTarget:
    bootstrap = request.getfixturevalue("kafka_bootstrap") if request.param == "kafka" else None
    return BusTarget(request.param, database_url, bootstrap, topic_prefix)


@pytest.fixture
async def open_bus(target: BusTarget) -> AsyncIterator[Callable[[], Bus]]:
    """Opens started buses with the contract topic created; closes them all at the end."""
    opened: list[Bus] = []

    def factory() -> Bus:
        bus = target.new_bus()
        opened.append(bus)
        return bus

    yield factory
    for bus in opened:
        await bus.close()
