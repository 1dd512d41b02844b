"""A journey's send request becomes a mail: journey and notifier on one database and bus."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from kizuna import topics
from kizuna.bus import OutgoingMessage
from kizuna.bus.factory import bus_from_settings
from kizuna.db import create_engine
from kizuna.envelope import Envelope
from kizuna_journey.main import create_app as journey_app
from kizuna_journey.settings import JourneySettings
from kizuna_notifier.main import create_app as notifier_app
from kizuna_notifier.settings import NotifierSettings
from tests.helpers import make_workspace
from tests.integration.apps import running


async def test_cart_reminder_reaches_the_mailbox(database_url: str, topic_prefix: str) -> None:
    base: dict[str, Any] = {
        "database_url": database_url,
        "topic_prefix": topic_prefix,
        "bus_partitions": 4,
        "log_level": "WARNING",
        "secret_key": "k" * 40,
    }
    engine = create_engine(database_url, pool_size=1)
    workspace_id, _, admin = await make_workspace(engine, "shop")
    headers = {"Authorization": f"Bearer {admin.secret}"}
    bus = bus_from_settings(JourneySettings(**base))
    await bus.start()
    journeys, notifier = (
        journey_app(JourneySettings(**base)),
        notifier_app(NotifierSettings(**base)),
    )
    try:
        async with running(journeys) as journey_api, running(notifier) as notifier_api:
            response = await notifier_api.put(
                "/v1/templates/cart-reminder",
                json={
                    "channel": "email",
                    "subject": "{{ customer.first_name }}, your cart",
                    "html": "{% for p in data.properties.products %}{{ p.name }}{% endfor %}",
                },
                headers=headers,
            )
            assert response.status_code == 200, response.text
            created = await journey_api.post(
                "/v1/journeys/from-template/cart-abandonment",
                json={"id": "cart", "options": {"holdout_percent": 0}},
                headers=headers,
            )
            assert created.status_code == 201
            await journey_api.post("/v1/journeys/cart/activate", headers=headers)
            t0 = journeys.state.journeys.clock()
            events = [
                Envelope.new(
                    "identify",
                    workspace_id,
                    "kz_1",
                    {
                        "type": "identify",
                        "customerId": "kz_1",
                        "traits": {"email": "hanako@example.com", "first_name": "Hanako"},
                    },
                    occurred_at=t0,
                ),
                Envelope.new(
                    "track",
                    workspace_id,
                    "kz_1",
                    {
                        "type": "track",
                        "event": "Checkout Started",
                        "customerId": "kz_1",
                        "properties": {"products": [{"name": "Sencha"}]},
                    },
                    occurred_at=t0,
                ),
            ]
            await bus.publish_batch(
                topics.RESOLVED_EVENTS, [OutgoingMessage(e.bus_key, e.to_bytes()) for e in events]
            )
            await asyncio.sleep(1)
            later = t0 + timedelta(minutes=61)
            journeys.state.journeys.clock = lambda: later
            async with asyncio.timeout(30):
                while True:
                    await journeys.state.journeys.fire_due()
                    listed = (await notifier_api.get("/v1/mailbox", headers=headers)).json()
                    if listed["mail"]:
                        break
                    await asyncio.sleep(0.2)
            [mail] = listed["mail"]
            assert mail["recipient"] == "hanako@example.com"
            assert mail["subject"] == "Hanako, your cart"
            eml = await notifier_api.get(mail["eml"], headers=headers)
            assert b"Sencha" in eml.content
            async with engine.connect() as conn:
                status = await conn.scalar(sa.text("SELECT status FROM nt_sends"))
            assert status == "sent"
    finally:
        await bus.close()
        await engine.dispose()
