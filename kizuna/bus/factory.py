"""Choose the bus from one setting: KIZUNA_BUS_URL=postgres or kafka://host:port[,host:port]."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from kizuna.bus.base import Bus
from kizuna.bus.kafka import KafkaBus
from kizuna.bus.pglog import PostgresLogBus
from kizuna.db import asyncpg_dsn
from kizuna.settings import KizunaSettings, redact


def bus_from_settings(settings: KizunaSettings) -> Bus:
    url = settings.bus_url.strip()
    retention = timedelta(hours=settings.bus_retention_hours)
    if url in ("postgres", "postgresql"):
        return PostgresLogBus(
            asyncpg_dsn(settings.database_dsn()),
            settings.topic_prefix,
            settings.bus_partitions,
            retention=retention,
        )
    parts = urlsplit(url)
    if parts.scheme == "kafka" and parts.netloc:
        return KafkaBus(
            parts.netloc,
            settings.topic_prefix,
            settings.bus_partitions,
            replication_factor=settings.kafka_replication_factor,
            session_timeout_ms=settings.consumer_session_timeout_ms,
            publish_timeout_ms=settings.bus_publish_timeout_ms,
            retention=retention,
        )
    if parts.scheme in ("postgres", "postgresql"):
        return PostgresLogBus(
            asyncpg_dsn(url), settings.topic_prefix, settings.bus_partitions, retention=retention
        )
    raise ValueError(
        f"KIZUNA_BUS_URL={redact(url)!r} is not understood: use 'postgres' or 'kafka://host:9092'"
    )
