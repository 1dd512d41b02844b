"""Small helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna import auth
from kizuna.bus import Bus, BusMessage


async def make_workspace(
    engine: AsyncEngine, name: str
) -> tuple[str, auth.IssuedKey, auth.IssuedKey]:
    async with engine.begin() as conn:
        workspace_id = await auth.create_workspace(conn, name)
        write = await auth.issue_key(conn, workspace_id, "write", f"{name} write")
        admin = await auth.issue_key(conn, workspace_id, "admin", f"{name} admin")
    return workspace_id, write, admin


async def read_topic(
    bus: Bus, topic: str, at_least: int, timeout: float = 30.0, settle: float = 1.0
) -> list[BusMessage]:
    """Everything on ``topic`` from the start: waits for ``at_least`` messages, then keeps
    reading for ``settle`` seconds to catch any extra (duplicates) that would follow."""
    consumer = bus.consumer(f"reader-{uuid.uuid4().hex[:8]}", [topic])
    await consumer.start()
    seen: list[BusMessage] = []
    try:
        async with asyncio.timeout(timeout):
            while len(seen) < at_least:
                seen.extend(await consumer.fetch(500, 0.5))
        loop = asyncio.get_running_loop()
        quiet_until = loop.time() + settle
        while loop.time() < quiet_until:
            seen.extend(await consumer.fetch(500, 0.2))
    finally:
        await consumer.close()
    return seen


@dataclass
class FakeClock:
    """An injectable clock for services that take ``clock=``: tests move time by hand."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
