"""The broker dies while events arrive: no 200 for an event that was not stored, and events
retried after the broker is back are all there once deduplicated by messageId."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
import pytest

from kizuna import localkafka, topics
from kizuna.bus.kafka import KafkaBus
from kizuna.db import create_engine
from kizuna.envelope import Envelope
from kizuna_ingest.main import create_app
from kizuna_ingest.settings import IngestSettings
from tests.helpers import make_workspace, read_topic
from tests.integration.apps import running

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


async def send(client: httpx.AsyncClient, key: str, message_id: str) -> httpx.Response:
    return await client.post(
        "/v1/track",
        json={
            "writeKey": key,
            "userId": f"user-{message_id[-1]}",
            "event": "Outage",
            "messageId": message_id,
        },
    )


async def test_broker_outage_gives_503_and_retries_are_stored(
    tmp_path: Path, database_url: str
) -> None:
    broker = await asyncio.to_thread(localkafka.start, tmp_path / "kafka")
    settings = IngestSettings(
        database_url=database_url,
        bus_url=f"kafka://{broker.bootstrap}",
        topic_prefix="outage.",
        bus_partitions=2,
        bus_publish_timeout_ms=1500,
        log_level="ERROR",
        log_format="console",
    )
    engine = create_engine(database_url, pool_size=1)
    _, write, _ = await make_workspace(engine, "outage")
    await engine.dispose()
    statuses: dict[str, int] = {}
    try:
        async with running(create_app(settings)) as client:
            for i in range(20):
                statuses[f"m{i:03d}"] = (await send(client, write.secret, f"m{i:03d}")).status_code
            assert set(statuses.values()) == {200}

            async def one(message_id: str) -> None:
                response = await send(client, write.secret, message_id)
                statuses[message_id] = response.status_code
                if response.status_code != 200:
                    assert response.status_code == 503
                    assert response.headers["retry-after"] == "5"

            async def steady_traffic() -> None:
                # Rounds of 10 until at least 60 more are sent and some met the dead broker.
                start = 20
                while start < 80 or not any(s != 200 for s in statuses.values()):
                    assert start < 400, "the broker never seemed down"
                    await asyncio.gather(*(one(f"m{i:03d}") for i in range(start, start + 10)))
                    start += 10
                    await asyncio.sleep(0.1)

            traffic = asyncio.create_task(steady_traffic())
            await asyncio.sleep(0.5)
            await asyncio.to_thread(broker.kill)
            await traffic
            refused = sorted(m for m, status in statuses.items() if status != 200)
            assert refused, "requests made while the broker was down must be refused"

            broker = await asyncio.to_thread(localkafka.start, tmp_path / "kafka")
            async with asyncio.timeout(120):
                while refused:
                    responses = await asyncio.gather(
                        *(send(client, write.secret, m) for m in refused)
                    )
                    retried = list(zip(refused, responses, strict=True))
                    refused = [m for m, response in retried if response.status_code != 200]
                    if refused:
                        await asyncio.sleep(1)

        reader = KafkaBus(broker.bootstrap, "outage.", 2)
        await reader.start()
        try:
            messages = await read_topic(reader, topics.RAW_EVENTS, 80, timeout=60, settle=2)
        finally:
            await reader.close()
    finally:
        await asyncio.to_thread(broker.stop)

    ids = Counter(Envelope.from_bytes(m.value).id for m in messages)
    assert set(ids) == set(statuses), "every acknowledged and every retried event is stored"
    # The raw topic is at-least-once: a publish that timed out may still land. Consumers
    # dedupe on (workspace, messageId), which the count above already proves sufficient.
