"""The notifier SIGKILLed while 2,000 integration webhook deliveries are pending, then
restarted: every message reaches the receiver, a delivery settled after a 2xx is never
attempted again, and a copy can only come from the rounds in flight when the process died
(``PIPELINE`` of them: one posting while the one before settles)."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa

from kizuna import topics
from kizuna.bus import OutgoingMessage
from kizuna.bus.factory import bus_from_settings
from kizuna.db import create_engine
from kizuna.devserver import serve_process
from kizuna.embedded_pg import free_port
from kizuna.envelope import Envelope
from kizuna.settings import KizunaSettings
from kizuna_notifier.integrations import PIPELINE
from tests.helpers import make_workspace
from tests.integration.live import served
from tests.integration.notifier.conftest import SECRET
from tests.integration.notifier.webhook_receiver import WebhookReceiver

MESSAGES = 2000
ROUND = 100


@pytest.mark.slow
async def test_killed_with_deliveries_pending_loses_none_and_repeats_no_settled_one(
    database_url: str, topic_prefix: str
) -> None:
    engine = create_engine(database_url, pool_size=2)
    workspace_id, _, admin = await make_workspace(engine, "shop")
    env = {
        "KIZUNA_DATABASE_URL": database_url,
        "KIZUNA_BUS_URL": "postgres",
        "KIZUNA_TOPIC_PREFIX": topic_prefix,
        "KIZUNA_BUS_PARTITIONS": "4",
        "KIZUNA_SECRET_KEY": SECRET,
        "KIZUNA_LOG_LEVEL": "WARNING",
        "KIZUNA_NOTIFIER_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "KIZUNA_NOTIFIER_WEBHOOK_BATCH_SIZE": str(ROUND),
        "KIZUNA_NOTIFIER_WEBHOOK_LEASE_SECONDS": "3",
    }
    hooks = WebhookReceiver()
    bus = bus_from_settings(
        KizunaSettings(database_url=database_url, topic_prefix=topic_prefix, bus_partitions=4)
    )
    await bus.start()
    port = free_port()
    first = serve_process("notifier", port, env)
    try:
        async with served(hooks.app) as base:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                created = await client.post(
                    "/v1/webhook-endpoints",
                    json={"url": f"{base}/hook/crm", "event_types": ["order.completed"]},
                    headers={"Authorization": f"Bearer {admin.secret}"},
                )
                assert created.status_code == 201, created.text
            endpoint = created.json()
            hooks.secrets["crm"] = [endpoint["secret"]]
            orders = [
                Envelope.new(
                    "track",
                    workspace_id,
                    f"c{i % 300}",
                    {"type": "track", "event": "Order Completed", "properties": {"order_id": i}},
                    event_id=f"order-{i}",
                )
                for i in range(MESSAGES)
            ]
            await bus.publish_batch(
                topics.RESOLVED_EVENTS, [OutgoingMessage(o.bus_key, o.to_bytes()) for o in orders]
            )
            async with asyncio.timeout(120):
                while len(hooks.at("crm")) < MESSAGES // 5:
                    await asyncio.sleep(0.005)
            first.send_signal(signal.SIGKILL)
            first.wait()

            async def ids(status: str) -> set[str]:
                async with engine.connect() as conn:
                    rows = await conn.execute(
                        sa.text("SELECT message_id FROM nt_webhook_deliveries WHERE status = :s"),
                        {"s": status},
                    )
                    return {row.message_id for row in rows}

            settled_before = await ids("succeeded")
            assert 0 < len(settled_before) < MESSAGES, "killed mid-way"

            second = serve_process("notifier", port, env)
            try:
                async with asyncio.timeout(180):
                    while len(await ids("succeeded")) < MESSAGES:
                        await asyncio.sleep(0.1)
            finally:
                second.terminate()
                second.wait(30)
        async with engine.connect() as conn:
            tries = Counter(
                row.message_id
                for row in await conn.execute(
                    sa.text("SELECT message_id FROM nt_webhook_attempts WHERE endpoint_id = :e"),
                    {"e": endpoint["id"]},
                )
            )
    finally:
        if first.poll() is None:
            first.kill()
        await bus.close()
        await engine.dispose()

    received = Counter(d.webhook_id for d in hooks.at("crm"))
    assert len(received) == MESSAGES  # none lost
    assert hooks.unverified == 0
    assert all(received[m] == 1 for m in settled_before)  # settled ones never sent again
    assert all(tries[m] == 1 for m in settled_before)
    assert sum(received.values()) - MESSAGES <= PIPELINE * ROUND  # only the rounds in flight
