"""The customer API on port 8002: read, search, timeline, back-office changes."""

from __future__ import annotations

import asyncio

from kizuna import topics
from kizuna.bus import OutgoingMessage
from kizuna.envelope import Envelope
from tests.integration.profile.conftest import T0, ProfileApi, raw, track


async def seed_hanako(api: ProfileApi) -> str:
    ws = api.workspace_id
    await api.profiles.feed(
        raw("page", anonymous_id="a-h", name="Home", at=0, workspace_id=ws),
        raw(
            "identify",
            user_id="hanako",
            anonymous_id="a-h",
            traits={
                "email": "hanako@example.jp",
                "firstName": "Hanako",
                "birthday": "1990-04-12",
                "timezone": "Asia/Tokyo",
                "plan": "gold",
                "age": 36,
            },
            at=1,
            workspace_id=ws,
        ),
        track(
            "Product Viewed",
            {"product_id": "tea", "name": "Sencha", "price": 1200},
            user_id="hanako",
            at=2,
            workspace_id=ws,
        ),
        track(
            "Product Added",
            {"product_id": "tea", "price": 1200, "quantity": 2},
            user_id="hanako",
            at=3,
            workspace_id=ws,
        ),
        track(
            "Email Opened",
            {"message_id": "s1", "machine_suspected": True},
            user_id="hanako",
            at=4,
            workspace_id=ws,
        ),
        track("Email Link Clicked", {"message_id": "s1"}, user_id="hanako", at=5, workspace_id=ws),
        track(
            "Order Completed",
            {"order_id": "o1", "total": 3000, "currency": "JPY"},
            user_id="hanako",
            at=6,
            workspace_id=ws,
        ),
        track(
            "Product Added",
            {"product_id": "cup", "price": 800},
            user_id="hanako",
            at=7,
            workspace_id=ws,
        ),
    )
    return await api.profiles.customer_of("user_id", "hanako", workspace_id=ws)


async def test_a_customer_by_id_or_user_id_with_typed_traits_and_facts(
    profile_api: ProfileApi,
) -> None:
    customer_id = await seed_hanako(profile_api)
    by_id = await profile_api.client.get(f"/v1/customers/{customer_id}", headers=profile_api.admin)
    assert by_id.status_code == 200, by_id.text
    by_user = await profile_api.client.get("/v1/customers/hanako", headers=profile_api.admin)
    assert by_user.json() == by_id.json()
    body = by_id.json()
    assert body["identifiers"] == {
        "anonymous_id": ["a-h"],
        "email": ["hanako@example.jp"],
        "user_id": ["hanako"],
    }
    assert body["profile"]["birthday"] == "1990-04-12"
    assert body["profile"]["first_name"] == "Hanako"
    assert body["profile"]["timezone"] == "Asia/Tokyo"
    facts = body["facts"]
    assert facts["events_count"] == 8
    assert (facts["orders_count"], facts["revenue_total"]) == (1, 3000)
    assert facts["average_order_value"] == 3000
    assert facts["last_email_opened_at"] is None, "a machine open is not engagement"
    assert facts["last_email_clicked_at"] is not None
    assert [i["product_id"] for i in facts["cart"]["items"]] == ["cup"], "cleared by the order"
    assert facts["cart"]["value"] == 800
    assert facts["last_viewed_products"][0]["product_id"] == "tea"
    missing = await profile_api.client.get("/v1/customers/nobody", headers=profile_api.admin)
    assert missing.status_code == 404
    assert missing.json()["error"]["status"] == 404
    anonymous = await profile_api.client.get("/v1/customers/hanako")
    assert anonymous.status_code == 401


async def test_search_by_email_phone_trait_and_segment_with_cursor(
    profile_api: ProfileApi,
) -> None:
    ws = profile_api.workspace_id
    await seed_hanako(profile_api)
    await profile_api.profiles.feed(
        *(
            raw(
                "identify",
                user_id=f"u{i}",
                traits={"plan": "gold" if i % 2 else "free", "phone": f"+81 90 0000 00{i:02d}"},
                at=i,
                workspace_id=ws,
            )
            for i in range(7)
        )
    )
    admin = profile_api.admin
    found = await profile_api.client.get(
        "/v1/customers", params={"email": "HANAKO@example.jp"}, headers=admin
    )
    assert [c["user_id"] for c in found.json()["customers"]] == ["hanako"]
    found = await profile_api.client.get(
        "/v1/customers", params={"phone": "+81-90-0000-0003"}, headers=admin
    )
    assert [c["user_id"] for c in found.json()["customers"]] == ["u3"]
    found = await profile_api.client.get("/v1/customers", params={"trait.age": "36"}, headers=admin)
    assert [c["user_id"] for c in found.json()["customers"]] == ["hanako"]

    gold: list[str] = []
    cursor = None
    while True:
        params = {"trait.plan": "gold", "limit": "2"}
        if cursor:
            params["cursor"] = cursor
        page = (await profile_api.client.get("/v1/customers", params=params, headers=admin)).json()
        gold.extend(c["user_id"] for c in page["customers"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(gold) == ["hanako", "u1", "u3", "u5"]

    bad = await profile_api.client.get("/v1/customers", params={"email": "nope"}, headers=admin)
    assert bad.status_code == 422
    assert "email" in bad.json()["error"]["message"]
    bad = await profile_api.client.get("/v1/customers", params={"cursor": "!!"}, headers=admin)
    assert bad.status_code == 422


async def test_segments_and_rfm_come_from_the_segmenters_published_changes(
    profile_api: ProfileApi,
) -> None:
    ws = profile_api.workspace_id
    customer_id = await seed_hanako(profile_api)

    def change(type_: str, segment: str, minutes: int, **payload: object) -> OutgoingMessage:
        event = Envelope(
            id=f"{type_}:{segment}:{minutes}",
            type=type_,
            workspace_id=ws,
            customer_key=customer_id,
            occurred_at=T0.replace(minute=minutes),
            received_at=T0,
            payload={"segment_id": segment, **payload},
        )
        return OutgoingMessage(event.bus_key, event.to_bytes())

    await profile_api.profiles.bus.publish_batch(
        topics.SEGMENT_CHANGES,
        [
            change(
                "segment.entered",
                "champions",
                10,
                segment_name="Champions",
                kind="rfm",
                scores={"recency": 5, "frequency": 5, "monetary": 4},
            ),
            change("segment.entered", "vip", 11, segment_name="VIP"),
            change("segment.exited", "vip", 12, segment_name="VIP"),
            change("segment.entered", "vip", 9, segment_name="VIP"),  # late, older: ignored
        ],
    )
    admin = profile_api.admin
    async with asyncio.timeout(20):
        while True:
            body = (
                await profile_api.client.get(f"/v1/customers/{customer_id}", headers=admin)
            ).json()
            if body["segments"]:
                break
            await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    body = (await profile_api.client.get(f"/v1/customers/{customer_id}", headers=admin)).json()
    assert [s["segment_id"] for s in body["segments"]] == ["champions"]
    assert body["rfm"] == {
        "tier": "champions",
        "name": "Champions",
        "scores": {"recency": 5, "frequency": 5, "monetary": 4},
    }
    found = await profile_api.client.get(
        "/v1/customers", params={"segment": "champions"}, headers=admin
    )
    assert [c["id"] for c in found.json()["customers"]] == [customer_id]


async def test_timeline_newest_first_paginated_and_filtered(profile_api: ProfileApi) -> None:
    customer_id = await seed_hanako(profile_api)
    admin = profile_api.admin
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (
            await profile_api.client.get(
                f"/v1/customers/{customer_id}/events", params=params, headers=admin
            )
        ).json()
        seen.extend(e["occurred_at"] for e in page["events"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 8
    assert seen == sorted(seen, reverse=True)
    orders = await profile_api.client.get(
        "/v1/customers/hanako/events", params={"name": "Order Completed"}, headers=admin
    )
    assert [e["payload"]["properties"]["order_id"] for e in orders.json()["events"]] == ["o1"]
    pages = await profile_api.client.get(
        "/v1/customers/hanako/events", params={"type": "page"}, headers=admin
    )
    assert [e["name"] for e in pages.json()["events"]] == ["Home"]


async def test_back_office_changes_are_recorded_as_events(profile_api: ProfileApi) -> None:
    customer_id = await seed_hanako(profile_api)
    admin = profile_api.admin
    changed = await profile_api.client.patch(
        "/v1/customers/hanako",
        json={"traits": {"plan": "platinum"}, "consent": {"email": "revoked", "line": "granted"}},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["traits"]["plan"] == "platinum"
    assert body["consent"]["email"]["status"] == "revoked"
    assert body["consent"]["email"]["source"] == "back-office"
    assert body["consent"]["line"]["status"] == "granted"
    timeline = await profile_api.client.get(
        f"/v1/customers/{customer_id}/events", params={"limit": "3"}, headers=admin
    )
    recorded = {(e["type"], e["name"]) for e in timeline.json()["events"]}
    assert ("identify", None) in recorded
    assert ("track", "Consent Updated") in recorded

    for body_, field in (
        ({"traits": {"birthday": "12/04/1990"}}, "birthday"),
        ({"traits": {"email": "nope"}}, "email"),
        ({"consent": {"fax": "granted"}}, "consent.fax"),
        ({"consent": {"email": "maybe"}}, "consent.email"),
    ):
        refused = await profile_api.client.patch("/v1/customers/hanako", json=body_, headers=admin)
        assert refused.status_code == 422, body_
        fields = refused.json()["error"]["fields"]
        assert any(field in f["field"] or field in f["problem"] for f in fields), fields
    empty = await profile_api.client.patch("/v1/customers/hanako", json={}, headers=admin)
    assert empty.status_code == 422
