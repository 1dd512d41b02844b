from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from kizuna import topics
from kizuna.bus import Bus, OutgoingMessage
from kizuna.bus.factory import bus_from_settings
from kizuna.db import create_engine
from kizuna.envelope import Envelope
from kizuna_segmenter.main import create_app
from kizuna_segmenter.runtime import Segmenter
from kizuna_segmenter.settings import SegmenterSettings
from tests.helpers import FakeClock, make_workspace, read_topic
from tests.integration.apps import running

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@dataclass
class SegmenterApp:
    client: httpx.AsyncClient
    app_state: Any
    workspace_id: str
    admin_key: str
    bus: Bus
    clock: FakeClock
    settings: SegmenterSettings
    sent: int = 0
    changes_seen: list[Envelope] = field(default_factory=list)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    @property
    def segmenter(self) -> Segmenter:
        segmenter: Segmenter = self.app_state.segmenter
        return segmenter

    async def publish(self, topic: str, *events: Envelope) -> None:
        await self.bus.publish_batch(
            topic, [OutgoingMessage(e.bus_key, e.to_bytes()) for e in events]
        )

    def order(
        self, customer: str, order_id: str, total: float, *, refund: bool = False, **extra: Any
    ) -> Envelope:
        self.sent += 1
        name = "Order Refunded" if refund else "Order Completed"
        return Envelope(
            id=f"ev-{order_id}-{self.sent}",
            type="track",
            workspace_id=self.workspace_id,
            customer_key=customer,
            occurred_at=self.clock.now,
            received_at=self.clock.now,
            payload={
                "type": "track",
                "event": name,
                "customerId": customer,
                "properties": {
                    "order_id": order_id,
                    **({"total": total} if total else {}),
                    **extra,
                },
            },
        )

    async def changes(self, at_least: int, settle: float = 0.5) -> list[Envelope]:
        messages = await read_topic(self.bus, topics.SEGMENT_CHANGES, at_least, settle=settle)
        return [Envelope.from_bytes(m.value) for m in messages]

    async def wait_until(self, condition: Callable[[], Any], timeout: float = 20) -> None:
        import asyncio

        async with asyncio.timeout(timeout):
            while not await condition():
                await asyncio.sleep(0.05)

    async def tier_of(self, customer: str) -> str | None:
        engine = self.segmenter.engine
        async with engine.connect() as conn:
            tier = await conn.scalar(
                sa.text(
                    "SELECT tier FROM seg_customers WHERE workspace_id = :ws AND customer_id = :c"
                ),
                {"ws": self.workspace_id, "c": customer},
            )
        return None if tier is None else str(tier)


@pytest.fixture(params=["postgres", pytest.param("kafka", marks=pytest.mark.kafka)])
def segmenter_settings(
    request: pytest.FixtureRequest, database_url: str, topic_prefix: str
) -> SegmenterSettings:
    bus_url = "postgres"
    if request.param == "kafka":
        bus_url = f"kafka://{request.getfixturevalue('kafka_bootstrap')}"
    return SegmenterSettings(
        database_url=database_url,
        bus_url=bus_url,
        topic_prefix=topic_prefix,
        bus_partitions=4,
        log_level="WARNING",
        log_format="console",
        segmenter_sweep_seconds=3600,  # tests sweep by hand, with an injected clock
    )


@pytest.fixture
async def segmenter_app(segmenter_settings: SegmenterSettings) -> AsyncIterator[SegmenterApp]:
    engine = create_engine(segmenter_settings.database_dsn(), pool_size=1)
    workspace_id, _, admin = await make_workspace(engine, "shop")
    await engine.dispose()
    bus = bus_from_settings(segmenter_settings)
    await bus.start()
    clock = FakeClock(T0)
    app = create_app(segmenter_settings)
    try:
        async with running(app) as client:
            app.state.segmenter.clock = clock
            yield SegmenterApp(
                client, app.state, workspace_id, admin.secret, bus, clock, segmenter_settings
            )
    finally:
        await bus.close()
