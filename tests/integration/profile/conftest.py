from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna import topics
from kizuna.bus import Bus
from kizuna.bus.factory import bus_from_settings
from kizuna.db import create_engine
from kizuna.envelope import Envelope
from kizuna.settings import KizunaSettings
from kizuna_profile import consumers, handlers
from kizuna_profile.main import create_app
from kizuna_profile.settings import ProfileSettings
from tests.helpers import make_workspace, read_topic
from tests.integration.apps import running

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
_ids = itertools.count()


def raw(
    type_: str,
    *,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    at: int = 0,
    message_id: str | None = None,
    workspace_id: str = "ws_test",
    **fields: Any,
) -> Envelope:
    """A raw event as ingest would publish it; ``at`` is minutes after T0."""
    payload: dict[str, Any] = {"type": type_, **fields}
    if user_id is not None:
        payload["userId"] = user_id
    if anonymous_id is not None:
        payload["anonymousId"] = anonymous_id
    message_id = message_id or f"m{next(_ids)}"
    payload["messageId"] = message_id
    when = T0 + timedelta(minutes=at)
    return Envelope(
        id=message_id,
        type=type_,
        workspace_id=workspace_id,
        customer_key=user_id or anonymous_id or fields.get("customerId") or "?",
        occurred_at=when,
        received_at=when,
        payload=payload,
    )


def track(event: str, properties: dict[str, Any] | None = None, **kw: Any) -> Envelope:
    return raw("track", event=event, properties=properties or {}, **kw)


@dataclass
class Profiles:
    """The profile service's store and bus, driven directly (no HTTP)."""

    engine: AsyncEngine
    bus: Bus
    settings: ProfileSettings
    published: list[handlers.Outcome] = field(default_factory=list, repr=False)

    async def feed(self, *events: Envelope) -> handlers.Outcome:
        outcome = await consumers.resolve_and_publish(self.engine, self.bus, list(events))
        self.published.append(outcome)
        return outcome

    async def customer_of(self, kind: str, value: str, workspace_id: str = "ws_test") -> str:
        async with self.engine.connect() as conn:
            found = await conn.scalar(
                sa.text(
                    "SELECT customer_id FROM profile_identifiers"
                    " WHERE workspace_id = :ws AND kind = :k AND value = :v"
                ),
                {"ws": workspace_id, "k": kind, "v": value},
            )
        assert found is not None, f"no customer has {kind} {value}"
        return str(found)

    async def row(self, customer_id: str, workspace_id: str = "ws_test") -> dict[str, Any]:
        async with self.engine.connect() as conn:
            found = (
                (
                    await conn.execute(
                        sa.text(
                            "SELECT * FROM profile_customers WHERE workspace_id = :ws AND id = :id"
                        ),
                        {"ws": workspace_id, "id": customer_id},
                    )
                )
                .mappings()
                .one()
            )
        return dict(found)

    async def count(self, sql: str, **params: Any) -> int:
        async with self.engine.connect() as conn:
            return int(await conn.scalar(sa.text(sql), params) or 0)

    async def topic(self, name: str, at_least: int) -> list[Envelope]:
        messages = await read_topic(self.bus, name, at_least, settle=0.3)
        return [Envelope.from_bytes(m.value) for m in messages]

    async def resolved(self, at_least: int) -> list[Envelope]:
        return await self.topic(topics.RESOLVED_EVENTS, at_least)


def profile_settings(base: KizunaSettings, **overrides: Any) -> ProfileSettings:
    return ProfileSettings(**{**base.model_dump(), "secret_key": "test-secret", **overrides})


@pytest.fixture
async def profiles(settings: KizunaSettings) -> AsyncIterator[Profiles]:
    engine = create_engine(settings.database_dsn(), pool_size=2)
    bus = bus_from_settings(settings)
    await bus.start()
    await bus.ensure_topics(topics.ALL_TOPICS)
    try:
        yield Profiles(engine, bus, profile_settings(settings))
    finally:
        await bus.close()
        await engine.dispose()


@dataclass
class ProfileApi:
    client: httpx.AsyncClient
    workspace_id: str
    admin_key: str
    profiles: Profiles

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}


@pytest.fixture
async def profile_api(profiles: Profiles) -> AsyncIterator[ProfileApi]:
    workspace_id, _, admin = await make_workspace(profiles.engine, "shop")
    async with running(create_app(profiles.settings)) as client:
        yield ProfileApi(client, workspace_id, admin.secret, profiles)
