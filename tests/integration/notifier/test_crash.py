"""The notifier SIGKILLed mid-batch of 5,000 sends and restarted: the SMTP server receives
every message, each under one Message-ID; a copy can only come from the batch that was in
flight when the process died, and it carries the same Message-ID (docs/notifier.md)."""

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
from tests.helpers import make_workspace
from tests.integration.notifier.conftest import SECRET, Inbox

SENDS = 5000
BATCH = 200


@pytest.mark.slow
async def test_killed_mid_batch_every_mail_arrives_under_one_message_id(
    database_url: str, topic_prefix: str, smtp: tuple[Inbox, int]
) -> None:
    inbox, smtp_port = smtp
    engine = create_engine(database_url, pool_size=2)
    workspace_id, _, admin = await make_workspace(engine, "shop")
    env = {
        "KIZUNA_DATABASE_URL": database_url,
        "KIZUNA_BUS_URL": "postgres",
        "KIZUNA_TOPIC_PREFIX": topic_prefix,
        "KIZUNA_BUS_PARTITIONS": "4",
        "KIZUNA_CONSUMER_BATCH_SIZE": str(BATCH),
        "KIZUNA_SECRET_KEY": SECRET,
        "KIZUNA_LOG_LEVEL": "WARNING",
        "KIZUNA_NOTIFIER_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
    }
    port = free_port()
    first = serve_process("notifier", port, env)
    bus = bus_from_settings(
        KizunaSettings(database_url=database_url, topic_prefix=topic_prefix, bus_partitions=4)
    )
    await bus.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.put(
                "/v1/templates/nudge",
                json={"channel": "email", "subject": "Hi {{ customer.first_name }}", "text": "x"},
                headers={"Authorization": f"Bearer {admin.secret}"},
            )
            assert response.status_code == 200, response.text
        requests = [
            Envelope.new(
                "send.requested",
                workspace_id,
                f"c{i}",
                {
                    "send_id": f"send:r{i}:mail:1",
                    "customer_id": f"c{i}",
                    "channel": "email",
                    "category": "transactional",
                    "template": "nudge",
                    "customer": {"traits": {"email": f"c{i}@example.com", "first_name": "Ken"}},
                },
                event_id=f"send:r{i}:mail:1",
            )
            for i in range(SENDS)
        ]
        await bus.publish_batch(
            topics.SEND_REQUESTS, [OutgoingMessage(r.bus_key, r.to_bytes()) for r in requests]
        )
        async with asyncio.timeout(120):
            while len(inbox.received()) < SENDS // 4:
                await asyncio.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert len(inbox.received()) < SENDS, "killed mid-way"

        second = serve_process("notifier", port, env)
        try:

            async def settled() -> int:
                async with engine.connect() as conn:
                    return int(
                        await conn.scalar(
                            sa.text("SELECT count(*) FROM nt_sends WHERE status = 'sent'")
                        )
                        or 0
                    )

            async with asyncio.timeout(180):
                while await settled() < SENDS:
                    await asyncio.sleep(0.1)
        finally:
            second.terminate()
            second.wait(30)
    finally:
        await bus.close()
        await engine.dispose()

    received = [(m["X-Kizuna-Send-Id"], m["Message-ID"]) for m in inbox.received()]
    per_message_id = Counter(message_id for _, message_id in received)
    assert len(per_message_id) == SENDS  # every mail arrived
    message_ids: dict[str, set[str]] = {}
    for send_id, message_id in received:
        message_ids.setdefault(send_id, set()).add(message_id)
    assert set(message_ids) == {r.id for r in requests}
    assert {len(ids) for ids in message_ids.values()} == {1}  # one Message-ID per send
    copies = sum(per_message_id.values()) - SENDS
    assert copies <= BATCH  # only the batch in flight when it died can arrive twice
