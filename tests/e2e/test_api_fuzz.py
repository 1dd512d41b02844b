"""Every service's OpenAPI schema fuzzed by schemathesis, valid and invalid inputs alike, over
real HTTP with valid keys: no answer is a 5xx, and every 4xx carries a JSON error body."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from kizuna.db import create_engine
from kizuna.settings import KizunaSettings
from tests.conftest import database_url_on
from tests.helpers import make_workspace
from tests.integration.apps import service_app
from tests.integration.live import serving

EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Platform:
    urls: dict[str, str]
    write_key: str
    admin_key: str

    def headers(self, service: str, path: str) -> dict[str, str]:
        if service == "ingest" and not path.startswith("/v1/sources"):
            return {"Authorization": httpx.BasicAuth(self.write_key, "")._auth_header}
        return {"Authorization": f"Bearer {self.admin_key}"}


@pytest.fixture(scope="module")
def platform(pg_server_url: str, template_database: str) -> Iterator[Platform]:
    name = f"t_{uuid.uuid4().hex[:12]}"

    async def create() -> tuple[str, str]:
        conn = await asyncpg.connect(pg_server_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
        finally:
            await conn.close()
        engine = create_engine(database_url_on(pg_server_url, name), pool_size=1)
        try:
            _, write, admin = await make_workspace(engine, "fuzz")
        finally:
            await engine.dispose()
        return write.secret, admin.secret

    write_key, admin_key = asyncio.run(create())
    base: dict[str, Any] = {
        "database_url": database_url_on(pg_server_url, name),
        "bus_url": "postgres",
        "topic_prefix": f"t{uuid.uuid4().hex[:10]}.",
        "bus_partitions": 2,
        "log_level": "CRITICAL",
        "log_format": "console",
    }
    urls: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for service in ("ingest", "profile", "segmenter", "notifier", "journey"):
            extra: dict[str, Any] = {}
            if service == "notifier":
                extra = {
                    "notifier_profile_url": urls["profile"],
                    "notifier_webhook_allowed_networks": "127.0.0.0/8",
                }
            if service == "journey":
                extra = {"journey_notifier_url": urls["notifier"]}
            app = service_app(service, KizunaSettings(**base), **extra)
            urls[service] = stack.enter_context(serving(app))
        yield Platform(urls, write_key, admin_key)

    async def drop() -> None:
        conn = await asyncpg.connect(pg_server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def fuzz(platform: Platform, service: str) -> None:
    """Every operation, positive and negative examples; all failures reported together."""
    schema = schemathesis.openapi.from_url(f"{platform.urls[service]}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        operations += 1
        for mode in GenerationMode:

            @given(case=operation.as_strategy(generation_mode=mode))
            @EXAMPLES
            def run(case: Any) -> None:
                check(platform, service, case)

            try:
                run()
            except Unsatisfiable:
                continue  # nothing of this operation can be made invalid
            except AssertionError as error:
                failures.append(f"{mode.value} {operation.label}: {str(error).splitlines()[0]}")
    assert operations > 0
    assert not failures, "\n".join(failures)


def check(platform: Platform, service: str, case: Any) -> None:
    response = case.call(
        base_url=platform.urls[service],
        headers=platform.headers(service, case.path),
        timeout=30,
    )
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} → {response.status_code}: {response.text[:300]}"
    )
    if 400 <= response.status_code < 500 and case.method.upper() != "HEAD":
        content_type = response.headers.get("content-type") or [""]
        assert content_type[0].startswith("application/json"), (
            f"{case.method} {case.formatted_path} → {response.status_code} without JSON"
        )
        assert "error" in response.json(), response.text[:300]


@pytest.mark.parametrize("service", ["ingest", "profile", "segmenter", "notifier", "journey"])
def test_no_input_makes_a_service_fail(platform: Platform, service: str) -> None:
    fuzz(platform, service)


def test_a_nul_character_or_an_unstorable_value_is_a_422_naming_it(platform: Platform) -> None:
    admin = {"Authorization": f"Bearer {platform.admin_key}"}
    with httpx.Client(base_url=platform.urls["journey"], headers=admin) as client:
        nul = client.get("/v1/journeys", params={"status": "live\x00"})
        assert nul.status_code == 422
        assert nul.json()["error"]["fields"] == [
            {"field": "query.status", "problem": "must not contain a NUL character"}
        ]
    with httpx.Client(base_url=platform.urls["notifier"], headers=admin) as client:
        huge = client.get("/v1/mailbox", params={"before": 2**70})
        assert huge.status_code == 422
        assert "cannot be stored" in huge.json()["error"]["message"]
