"""Alembic is the only way the schema changes. Each component (the core plumbing and each
service) keeps its own migration history and its own version table in one database."""

from __future__ import annotations

import asyncio
import importlib.resources
from dataclasses import dataclass
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from kizuna.db import sqlalchemy_url

MIGRATION_LOCK_ID = 0x4B495A  # serialises concurrent `kizuna migrate` runs


@dataclass(frozen=True)
class Component:
    name: str
    package: str  # a package holding a `migrations` folder with env.py and versions/

    @property
    def script_location(self) -> Path:
        return Path(str(importlib.resources.files(self.package) / "migrations"))

    @property
    def version_table(self) -> str:
        return f"alembic_version_{self.name}"


COMPONENTS: tuple[Component, ...] = (Component("core", "kizuna"),)
SERVICE_PACKAGES = {
    "ingest": "kizuna_ingest",
    "profile": "kizuna_profile",
    "segmenter": "kizuna_segmenter",
    "journey": "kizuna_journey",
    "notifier": "kizuna_notifier",
}


def all_components() -> list[Component]:
    found = list(COMPONENTS)
    for name, package in SERVICE_PACKAGES.items():
        component = Component(name, package)
        if (component.script_location / "env.py").exists():
            found.append(component)
    return found


def alembic_config(component: Component, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(component.script_location))
    config.attributes["database_url"] = database_url
    config.attributes["version_table"] = component.version_table
    return config


def upgrade(database_url: str, components: list[Component] | None = None) -> list[str]:
    """Bring every component's tables to head; safe to run from several processes at once."""
    done = []
    for component in components or all_components():
        command.upgrade(alembic_config(component, database_url), "head")
        done.append(component.name)
    return done


async def upgrade_async(database_url: str) -> list[str]:
    return await asyncio.to_thread(upgrade, database_url)


def run_env() -> None:
    """The body of every component's env.py."""
    url = context.config.attributes["database_url"]
    version_table = context.config.attributes["version_table"]

    def migrate(connection: Connection) -> None:
        connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})"))
        context.configure(connection=connection, version_table=version_table)
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(sqlalchemy_url(url), poolclass=NullPool)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(migrate)
        finally:
            await engine.dispose()

    asyncio.run(run())
