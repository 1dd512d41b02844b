"""The running service consumes raw events and delivery outcomes from the bus, and expires old
history."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from kizuna import topics
from kizuna.bus import OutgoingMessage
from kizuna.envelope import Envelope, utcnow
from kizuna_profile import retention
from tests.integration.profile.conftest import ProfileApi, raw, track


async def wait_for_customer(api: ProfileApi, reference: str) -> dict[str, object]:
    async with asyncio.timeout(30):
        while True:
            found = await api.client.get(f"/v1/customers/{reference}", headers=api.admin)
            if found.status_code == 200:
                body: dict[str, object] = found.json()
                return body
            await asyncio.sleep(0.1)


async def test_raw_events_and_bounces_from_the_bus_reach_the_record(
    profile_api: ProfileApi,
) -> None:
    ws = profile_api.workspace_id
    bus = profile_api.profiles.bus
    events = [
        raw(
            "identify", user_id="bus-1", traits={"email": "bus@example.com"}, at=0, workspace_id=ws
        ),
        track(
            "Order Completed",
            {"order_id": "b1", "total": 10},
            user_id="bus-1",
            at=1,
            workspace_id=ws,
        ),
    ]
    await bus.publish_batch(
        topics.RAW_EVENTS, [OutgoingMessage(e.bus_key, e.to_bytes()) for e in events]
    )
    customer = await wait_for_customer(profile_api, "bus-1")
    customer_id = str(customer["id"])
    bounce = Envelope.new(
        "delivery.bounced",
        ws,
        customer_id,
        {"channel": "email", "send_id": "s-1", "bounce_type": "hard"},
        event_id="outcome:s-1:bounced",
    )
    delivered = Envelope.new("delivery.delivered", ws, customer_id, {"send_id": "s-2"})
    await bus.publish_batch(
        topics.DELIVERY_OUTCOMES,
        [OutgoingMessage(e.bus_key, e.to_bytes()) for e in (bounce, delivered, bounce)],
    )
    async with asyncio.timeout(30):
        while True:
            body = (
                await profile_api.client.get(
                    f"/v1/customers/{customer_id}", headers=profile_api.admin
                )
            ).json()
            if body["suppression"]:
                break
            await asyncio.sleep(0.1)
    assert body["suppression"] == {"email": ["hard_bounce"]}
    assert body["facts"]["events_count"] == 3, "the bounce is on the timeline, once"
    resolved = await profile_api.profiles.resolved(3)
    assert {e.id for e in resolved} == {events[0].id, events[1].id, bounce.id}


async def test_history_older_than_the_retention_is_deleted(profile_api: ProfileApi) -> None:
    ws = profile_api.workspace_id
    now = utcnow()
    old = raw("page", user_id="r-1", workspace_id=ws).model_copy(
        update={"occurred_at": now - timedelta(days=40)}
    )
    recent = raw("page", user_id="r-1", workspace_id=ws).model_copy(update={"occurred_at": now})
    await profile_api.profiles.feed(old, recent)
    deleted = await retention.delete_expired(profile_api.profiles.engine, retention_days=30)
    assert deleted == 1
    left = await profile_api.client.get("/v1/customers/r-1/events", headers=profile_api.admin)
    assert [e["id"] for e in left.json()["events"]] == [recent.id]
