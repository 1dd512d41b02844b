"""Both buses forget messages older than the retention period, like Kafka's retention.ms."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from kizuna.bus.kafka import KafkaBus
from kizuna.bus.pglog import PostgresLogBus
from tests.integration.bus.test_contract import drain, numbered, values


async def test_postgres_log_deletes_old_messages_and_consumers_go_on(
    database_url: str, topic_prefix: str
) -> None:
    bus = PostgresLogBus(database_url, topic_prefix, 2, retention=timedelta(hours=1))
    await bus.start()
    try:
        await bus.ensure_topics(["aged"])
        await bus.publish_batch("aged", numbered(30, keys=3))
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE bus_messages SET appended_at = now() - interval '2 hours'")
        finally:
            await conn.close()
        await bus.publish_batch("aged", numbered(10, keys=3, start=30))

        assert await bus.enforce_retention(chunk=7) == 30
        assert await bus.enforce_retention() == 0

        consumer = bus.consumer("late-reader", ["aged"])
        await consumer.start()
        try:
            assert sorted(values(await drain(consumer, 10))) == list(range(30, 40))
        finally:
            await consumer.close()
    finally:
        await bus.close()


@pytest.mark.kafka
async def test_kafka_topics_are_created_with_the_retention(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    bus = KafkaBus(kafka_bootstrap, topic_prefix, 2, retention=timedelta(hours=3))
    await bus.start()
    try:
        await bus.ensure_topics(["aged"])
    finally:
        await bus.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, f"{topic_prefix}aged", {"retention.ms": None}
                )
            ]
        )
    finally:
        await admin.close()
    configs = {entry[0]: entry[1] for resource in response.resources for entry in resource[4]}
    assert configs["retention.ms"] == str(3 * 3600 * 1000)
