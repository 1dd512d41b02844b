"""First-run set-up of an installation: database, schema, topics, default workspace."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from kizuna import auth, migrate, topics
from kizuna.bus.factory import bus_from_settings
from kizuna.db import create_engine
from kizuna.settings import KizunaSettings

DEFAULT_WORKSPACE_ID = "ws_default"


@dataclass(frozen=True)
class DefaultKeys:
    workspace_id: str
    write_key: str
    admin_key: str


async def prepare(settings: KizunaSettings) -> None:
    await migrate.upgrade_async(settings.database_dsn())
    bus = bus_from_settings(settings)
    await bus.start()
    try:
        await bus.ensure_topics(topics.ALL_TOPICS)
    finally:
        await bus.close()


async def default_workspace(settings: KizunaSettings, credentials_file: Path) -> DefaultKeys:
    """Create the default workspace once. Configured keys win; generated ones are kept in
    ``credentials_file`` (dev only) because the database holds only their hashes."""
    saved = json.loads(credentials_file.read_text()) if credentials_file.exists() else {}
    write_key = (
        settings.write_key.get_secret_value() if settings.write_key else saved.get("write_key")
    ) or auth.generate_key("write")
    admin_key = (
        settings.admin_key.get_secret_value() if settings.admin_key else saved.get("admin_key")
    ) or auth.generate_key("admin")
    engine = create_engine(settings.database_dsn(), pool_size=1)
    try:
        async with engine.begin() as conn:
            exists = await conn.scalar(
                sa.select(auth.workspaces.c.id).where(auth.workspaces.c.id == DEFAULT_WORKSPACE_ID)
            )
            if exists is None:
                await auth.create_workspace(conn, "Default workspace", DEFAULT_WORKSPACE_ID)
            await auth.ensure_key(
                conn, DEFAULT_WORKSPACE_ID, "write", "default write key", write_key
            )
            await auth.ensure_key(
                conn, DEFAULT_WORKSPACE_ID, "admin", "default admin key", admin_key
            )
    finally:
        await engine.dispose()
    credentials_file.parent.mkdir(parents=True, exist_ok=True)
    if not settings.write_key or not settings.admin_key:
        credentials_file.write_text(json.dumps({"write_key": write_key, "admin_key": admin_key}))
        credentials_file.chmod(0o600)
    return DefaultKeys(DEFAULT_WORKSPACE_ID, write_key, admin_key)
