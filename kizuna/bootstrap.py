"""First-run set-up of an installation: database, schema, topics, default workspace."""

from __future__ import annotations

import json
import secrets
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


def dev_secrets(settings: KizunaSettings, credentials_file: Path) -> dict[str, str]:
    """The default workspace's keys and the signing secret for a dev install. Configured values
    win; generated ones are kept in ``credentials_file`` (the database holds only hashes)."""
    saved: dict[str, str] = (
        json.loads(credentials_file.read_text()) if credentials_file.exists() else {}
    )
    configured = {
        "write_key": settings.write_key,
        "admin_key": settings.admin_key,
        "secret_key": None if settings.secret_key_problem() else settings.secret_key,
    }
    generate = {
        "write_key": lambda: auth.generate_key("write"),
        "admin_key": lambda: auth.generate_key("admin"),
        "secret_key": lambda: secrets.token_hex(32),
    }
    chosen: dict[str, str] = {}
    for name, value in configured.items():
        chosen[name] = value.get_secret_value() if value else saved.get(name) or generate[name]()
    keep = {name: chosen[name] for name, value in configured.items() if not value}
    credentials_file.parent.mkdir(parents=True, exist_ok=True)
    credentials_file.write_text(json.dumps(keep))
    credentials_file.chmod(0o600)
    return chosen


async def default_workspace(
    settings: KizunaSettings, write_key: str, admin_key: str
) -> DefaultKeys:
    """Create the default workspace once and make sure its keys are registered."""
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
    return DefaultKeys(DEFAULT_WORKSPACE_ID, write_key, admin_key)
