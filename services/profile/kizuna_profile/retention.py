"""Deletes event history older than KIZUNA_PROFILE_EVENT_RETENTION_DAYS, a slice at a time."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna.envelope import utcnow
from kizuna.service import BackgroundTask, ServiceContext
from kizuna_profile.settings import ProfileSettings

INTERVAL_SECONDS = 3600
SLICE = 10_000
log = structlog.get_logger(__name__)


async def delete_expired(engine: AsyncEngine, retention_days: float) -> int:
    cutoff = utcnow() - timedelta(days=retention_days)
    deleted = 0
    while True:
        async with engine.begin() as conn:
            result = await conn.execute(
                sa.text(
                    "DELETE FROM profile_events WHERE ctid = ANY(ARRAY("
                    " SELECT ctid FROM profile_events WHERE occurred_at < :cutoff LIMIT :n))"
                ),
                {"cutoff": cutoff, "n": SLICE},
            )
        deleted += result.rowcount
        if result.rowcount < SLICE:
            return deleted


def every_hour(settings: ProfileSettings) -> BackgroundTask:
    async def forever(context: ServiceContext) -> None:
        while True:
            try:
                deleted = await delete_expired(
                    context.engine, settings.profile_event_retention_days
                )
                if deleted:
                    log.info("profile_events_expired", deleted=deleted)
            except Exception:
                log.exception("profile_retention_failed")
            await asyncio.sleep(INTERVAL_SECONDS)

    return forever
