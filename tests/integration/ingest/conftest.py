from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from kizuna import topics
from kizuna.bus import Bus, BusMessage
from kizuna.bus.factory import bus_from_settings
from kizuna.db import create_engine
from kizuna.envelope import Envelope
from kizuna_ingest.main import create_app
from kizuna_ingest.settings import IngestSettings
from tests.helpers import make_workspace, read_topic
from tests.integration.apps import running


@dataclass
class Ingest:
    client: httpx.AsyncClient
    settings: IngestSettings
    workspace_id: str
    write_key: str
    admin_key: str
    reader: Bus

    async def stored(self, at_least: int, settle: float = 0.5) -> list[Envelope]:
        messages = await read_topic(self.reader, topics.RAW_EVENTS, at_least, settle=settle)
        return [Envelope.from_bytes(m.value) for m in messages]

    async def raw_messages(self, at_least: int) -> list[BusMessage]:
        return await read_topic(self.reader, topics.RAW_EVENTS, at_least)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}


@pytest.fixture(params=["postgres", pytest.param("kafka", marks=pytest.mark.kafka)])
def ingest_settings(
    request: pytest.FixtureRequest, database_url: str, topic_prefix: str
) -> IngestSettings:
    bus_url = "postgres"
    if request.param == "kafka":
        bus_url = f"kafka://{request.getfixturevalue('kafka_bootstrap')}"
    return IngestSettings(
        database_url=database_url,
        bus_url=bus_url,
        topic_prefix=topic_prefix,
        bus_partitions=4,
        bus_publish_timeout_ms=3000,
        ingest_source_cache_seconds=0,
        log_level="WARNING",
        log_format="console",
        secret_key="test-secret",
    )


@pytest.fixture
async def ingest(ingest_settings: IngestSettings) -> AsyncIterator[Ingest]:
    engine = create_engine(ingest_settings.database_dsn(), pool_size=1)
    workspace_id, write, admin = await make_workspace(engine, "shop")
    await engine.dispose()
    reader = bus_from_settings(ingest_settings)
    await reader.start()
    try:
        async with running(create_app(ingest_settings)) as client:
            yield Ingest(client, ingest_settings, workspace_id, write.secret, admin.secret, reader)
    finally:
        await reader.close()
