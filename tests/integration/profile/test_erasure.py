"""Erasure removes the person everywhere, announces it, and late events do not bring them back."""

from __future__ import annotations

from kizuna import topics
from tests.integration.profile.conftest import ProfileApi, raw, track

TABLES = ("profile_events", "profile_orders", "profile_identifiers", "profile_segments")


async def test_erasure_deletes_everything_and_late_events_stay_out(
    profile_api: ProfileApi,
) -> None:
    ws = profile_api.workspace_id
    profiles = profile_api.profiles
    await profiles.feed(raw("page", anonymous_id="a-e", at=0, workspace_id=ws))
    await profiles.feed(
        raw(
            "identify",
            anonymous_id="a-old",
            traits={"email": "erase@example.com"},
            at=1,
            workspace_id=ws,
        )
    )
    await profiles.feed(
        raw(
            "identify",
            user_id="u-e",
            anonymous_id="a-e",
            traits={"email": "erase@example.com", "phone": "09011112222"},
            at=2,
            workspace_id=ws,
        ),
        track(
            "Order Completed",
            {"order_id": "e-1", "total": 100},
            user_id="u-e",
            at=3,
            workspace_id=ws,
        ),
    )
    customer_id = await profiles.customer_of("user_id", "u-e", workspace_id=ws)
    exported = await profile_api.client.get(
        f"/v1/customers/{customer_id}/export", headers=profile_api.admin
    )
    assert exported.status_code == 200
    body = exported.json()
    assert body["customer"]["id"] == customer_id
    assert len(body["events"]) == 4
    assert [o["order_id"] for o in body["orders"]] == ["e-1"]
    assert len(body["merged_ids"]) == 1, "the a-old profile was merged in"

    erased = await profile_api.client.delete("/v1/customers/u-e", headers=profile_api.admin)
    assert erased.status_code == 202, erased.text
    assert erased.json()["id"] == customer_id
    for table in TABLES:
        assert await profiles.count(f"SELECT count(*) FROM {table}") == 0, table
    assert await profiles.count("SELECT count(*) FROM profile_customers") == 0
    assert await profiles.count("SELECT count(*) FROM profile_merges") == 0
    gone = await profile_api.client.get(f"/v1/customers/{customer_id}", headers=profile_api.admin)
    assert gone.status_code == 404

    announced = await profiles.topic(topics.CUSTOMER_LIFECYCLE, 2)
    erasures = [e for e in announced if e.type == "customer.erased"]
    assert len(erasures) == 1
    assert erasures[0].payload["customer_id"] == customer_id
    assert len(erasures[0].payload["absorbed_ids"]) == 1
    assert "erase@example.com" not in erasures[0].to_bytes().decode()

    # Events that happened before the erasure arrive late, under every identifier it had,
    # and a tracked click names the erased customer: none of them recreates the person.
    late = await profiles.feed(
        track("Product Viewed", {"product_id": "p"}, anonymous_id="a-e", at=4, workspace_id=ws),
        raw(
            "identify",
            anonymous_id="x",
            traits={"email": "ERASE@example.com"},
            at=5,
            workspace_id=ws,
        ),
        track(
            "Email Link Clicked", {"message_id": "s"}, customerId=customer_id, at=6, workspace_id=ws
        ),
        track(
            "Order Completed", {"order_id": "e-2", "total": 5}, user_id="u-e", at=7, workspace_id=ws
        ),
    )
    assert (late.stored, late.dropped) == (0, 4)
    assert await profiles.count("SELECT count(*) FROM profile_customers") == 0

    again = await profile_api.client.delete(
        f"/v1/customers/{customer_id}", headers=profile_api.admin
    )
    assert again.status_code == 202, "repeating an erasure is harmless and announces it again"
    unknown = await profile_api.client.delete("/v1/customers/never", headers=profile_api.admin)
    assert unknown.status_code == 404


async def test_a_person_who_comes_back_after_erasure_starts_afresh(
    profile_api: ProfileApi,
) -> None:
    ws = profile_api.workspace_id
    profiles = profile_api.profiles
    await profiles.feed(
        raw(
            "identify",
            user_id="u-back",
            traits={"email": "b@example.com", "plan": "gold"},
            at=0,
            workspace_id=ws,
        )
    )
    erased = await profile_api.client.delete("/v1/customers/u-back", headers=profile_api.admin)
    assert erased.status_code == 202
    # A sign-up after the erasure (its event time is now, later than the erasure)
    await profiles.feed(
        raw(
            "identify",
            user_id="u-back",
            traits={"email": "b@example.com"},
            at=60 * 24 * 365 * 2,
            workspace_id=ws,
        )
    )
    back = await profile_api.client.get("/v1/customers/u-back", headers=profile_api.admin)
    assert back.status_code == 200
    assert back.json()["id"] != erased.json()["id"]
    assert "plan" not in back.json()["traits"], "nothing of the erased record comes back"
    assert back.json()["facts"]["events_count"] == 1
