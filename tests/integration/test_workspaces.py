"""Workspace A's keys can neither read nor change workspace B's data."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna import auth
from kizuna.db import create_engine
from kizuna.settings import KizunaSettings
from tests.helpers import make_workspace
from tests.integration.apps import running, service_app


def bearer(key: auth.IssuedKey | str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key if isinstance(key, str) else key.secret}"}


@pytest.fixture
async def engine(settings: KizunaSettings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database_dsn(), pool_size=1)
    yield engine
    await engine.dispose()


async def test_keys_are_bound_to_their_workspace(
    settings: KizunaSettings, engine: AsyncEngine
) -> None:
    a_id, a_write, a_admin = await make_workspace(engine, "A")
    b_id, b_write, b_admin = await make_workspace(engine, "B")
    async with running(service_app("ingest", settings)) as client:
        assert (await client.get("/v1/workspace", headers=bearer(a_admin))).json()["id"] == a_id
        listed = (await client.get("/v1/keys", headers=bearer(a_admin))).json()
        assert {k["id"] for k in listed} == {a_write.id, a_admin.id}

        refused = await client.delete(f"/v1/keys/{b_write.id}", headers=bearer(a_admin))
        assert refused.status_code == 404
        b_keys = (await client.get("/v1/keys", headers=bearer(b_admin))).json()
        assert all(k["revoked_at"] is None for k in b_keys)

        # A write key is not an admin key, even for its own workspace.
        assert (await client.get("/v1/keys", headers=bearer(a_write))).status_code == 401
    async with engine.connect() as conn:
        assert await auth.authenticate(conn, b_write.secret, "write") == auth.Principal(
            b_id, b_write.id, "write"
        )
        assert await auth.authenticate(conn, a_write.secret, "admin") is None


async def test_key_lifecycle_and_errors(settings: KizunaSettings, engine: AsyncEngine) -> None:
    _, _, admin = await make_workspace(engine, "A")
    async with running(service_app("ingest", settings)) as client:
        assert (await client.get("/v1/keys")).status_code == 401
        assert (await client.get("/v1/keys", headers=bearer("kz_admin_nope"))).status_code == 401

        created = await client.post(
            "/v1/keys", json={"kind": "write", "name": "shop"}, headers=bearer(admin)
        )
        assert created.status_code == 201
        secret = created.json()["secret"]
        async with engine.connect() as conn:
            assert await auth.authenticate(conn, secret, "write") is not None
            stored = await conn.scalar(
                auth.api_keys.select()
                .with_only_columns(auth.api_keys.c.key_hash)
                .where(auth.api_keys.c.id == created.json()["id"])
            )
        assert stored == auth.hash_key(secret)
        assert secret not in str(stored)

        bad = await client.post("/v1/keys", json={"kind": "root"}, headers=bearer(admin))
        assert bad.status_code == 422
        problems = {f["field"] for f in bad.json()["error"]["fields"]}
        assert problems == {"body.kind", "body.name"}

        revoke = await client.delete(f"/v1/keys/{created.json()['id']}", headers=bearer(admin))
        assert revoke.status_code == 204
        async with engine.connect() as conn:
            assert await auth.authenticate(conn, secret, "write") is None
        again = await client.delete(f"/v1/keys/{created.json()['id']}", headers=bearer(admin))
        assert again.status_code == 404
        assert again.json()["error"]["message"].startswith("no active key")


async def test_a_configured_key_cannot_be_claimed_by_another_workspace(
    engine: AsyncEngine,
) -> None:
    a_id, a_write, _ = await make_workspace(engine, "A")
    b_id, _, _ = await make_workspace(engine, "B")
    async with engine.begin() as conn:
        await auth.ensure_key(conn, a_id, "write", "again", a_write.secret)
        with pytest.raises(ValueError, match="another workspace"):
            await auth.ensure_key(conn, b_id, "write", "steal", a_write.secret)
