from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kizuna import auth, bootstrap
from kizuna.db import create_engine
from kizuna.services import SERVICES
from kizuna.settings import KizunaSettings
from tests.integration.apps import running, service_app


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_every_service_answers_health_ready_metrics_and_docs(
    service: str, settings: KizunaSettings
) -> None:
    async with running(service_app(service, settings)) as client:
        assert (await client.get("/healthz")).json() == {"status": "alive"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "bus": "ok"}
        metrics = (await client.get("/metrics")).text
        assert (
            f'kizuna_http_requests_total{{method="GET",route="/readyz",service="{service}"'
            in metrics
        )
        assert (await client.get("/openapi.json")).json()["info"]["title"] == f"Kizuna {service}"


async def test_readyz_reports_a_bus_that_is_down(settings: KizunaSettings) -> None:
    app = service_app("ingest", settings)
    async with running(app) as client:
        await app.state.context.bus.close()
        await app.state.context.bus.start()
        assert (await client.get("/readyz")).status_code == 200
        await app.state.context.bus.close()
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["bus"].startswith("failed")


async def test_dev_bootstrap_uses_configured_keys(tmp_path: Path, database_url: str) -> None:
    settings = KizunaSettings(
        database_url=database_url, write_key="kz_write_chosen", admin_key="kz_admin_chosen"
    )
    credentials = tmp_path / "credentials.json"
    chosen = bootstrap.dev_secrets(settings, credentials)
    assert (chosen["write_key"], chosen["admin_key"]) == ("kz_write_chosen", "kz_admin_chosen")
    assert KizunaSettings(secret_key=chosen["secret_key"]).secret_key_problem() is None
    assert bootstrap.dev_secrets(settings, credentials) == chosen, "the secret is kept"
    assert "kz_write_chosen" not in credentials.read_text(), "configured keys are not written"

    keys = await bootstrap.default_workspace(settings, chosen["write_key"], chosen["admin_key"])
    again = await bootstrap.default_workspace(settings, chosen["write_key"], chosen["admin_key"])
    assert keys == again
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            admin = await auth.authenticate(conn, "kz_admin_chosen", "admin")
            write = await auth.authenticate(conn, "kz_write_chosen", "write")
    finally:
        await engine.dispose()
    assert admin is not None
    assert write is not None
    assert admin.workspace_id == write.workspace_id == keys.workspace_id


def test_serve_refuses_a_known_or_short_signing_secret() -> None:
    for secret in ("dev-only-change-me", "change-me-in-production", "short"):
        assert KizunaSettings(secret_key=secret).secret_key_problem() is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIZUNA_")}
    result = subprocess.run(
        [sys.executable, "-m", "kizuna.cli", "serve", "ingest", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "KIZUNA_SECRET_KEY" in result.stderr
