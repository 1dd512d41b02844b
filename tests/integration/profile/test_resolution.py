"""Identity resolution against real PostgreSQL: anonymous to known, alias and identify merges,
duplicates, redelivery, late traits."""

from __future__ import annotations

from kizuna import topics
from tests.integration.profile.conftest import Profiles, raw, track


async def test_anonymous_history_attaches_to_the_known_customer(profiles: Profiles) -> None:
    await profiles.feed(
        track("Asset Downloaded", {"asset_id": "wp-1"}, anonymous_id="anon-1", at=0),
        raw("page", anonymous_id="anon-1", name="Pricing", at=1),
    )
    anonymous = await profiles.customer_of("anonymous_id", "anon-1")
    await profiles.feed(
        raw(
            "identify",
            user_id="u-1",
            anonymous_id="anon-1",
            traits={"email": "Hanako@Example.jp", "firstName": "Hanako"},
            at=5,
        )
    )
    known = await profiles.customer_of("user_id", "u-1")
    assert known == anonymous == await profiles.customer_of("email", "hanako@example.jp")
    row = await profiles.row(known)
    assert row["events_count"] == 3
    assert row["user_id"] == "u-1"
    assert row["traits"] == {"email": "Hanako@Example.jp", "firstName": "Hanako"}
    resolved = await profiles.resolved(3)
    assert {e.customer_key for e in resolved} == {known}
    assert all(e.payload["customerId"] == known for e in resolved)


async def test_identify_revealing_two_customers_merges_them_with_history(
    profiles: Profiles,
) -> None:
    await profiles.feed(
        raw("identify", user_id="u-7", traits={"plan": "gold"}, at=0),
        track("Order Completed", {"order_id": "o-1", "total": 5000}, user_id="u-7", at=1),
        raw("identify", anonymous_id="phone-app", traits={"email": "k@example.com"}, at=2),
        track(
            "Order Completed", {"order_id": "o-2", "total": 3000}, anonymous_id="phone-app", at=3
        ),
    )
    known = await profiles.customer_of("user_id", "u-7")
    other = await profiles.customer_of("anonymous_id", "phone-app")
    assert known != other
    outcome = await profiles.feed(
        raw("identify", user_id="u-7", traits={"email": "K@example.com"}, at=10)
    )
    assert await profiles.customer_of("anonymous_id", "phone-app") == known
    row = await profiles.row(known)
    assert row["orders_count"] == 2
    assert row["revenue_total"] == 8000
    assert row["events_count"] == 5
    assert row["traits"]["plan"] == "gold"
    assert await profiles.count("SELECT count(*) FROM profile_customers") == 1
    assert (
        await profiles.count("SELECT count(*) FROM profile_events WHERE customer_id = :c", c=known)
        == 5
    )
    merged = [e for e in outcome.lifecycle if e.type == "customer.merged"]
    assert [(e.payload["absorbed_id"], e.payload["survivor_id"]) for e in merged] == [
        (other, known)
    ]
    on_bus = await profiles.topic(topics.CUSTOMER_LIFECYCLE, 3)  # 2 created, 1 merged
    assert [e.id for e in on_bus if e.type == "customer.merged"] == [f"merged:{other}"]


async def test_alias_merges_previous_id_whichever_arrives_first(profiles: Profiles) -> None:
    await profiles.feed(track("Product Viewed", {"product_id": "p1"}, anonymous_id="old", at=0))
    await profiles.feed(raw("alias", user_id="new", previousId="old", at=1))
    await profiles.feed(track("Product Viewed", {"product_id": "p2"}, user_id="new", at=2))
    customer = await profiles.customer_of("user_id", "new")
    assert await profiles.customer_of("anonymous_id", "old") == customer
    # alias first, then the previous id's own events: still one person
    await profiles.feed(raw("alias", user_id="u-b", previousId="u-a", at=0))
    await profiles.feed(raw("identify", user_id="u-a", traits={"x": 1}, at=1))
    assert await profiles.customer_of("user_id", "u-a") == await profiles.customer_of(
        "user_id", "u-b"
    )


async def test_duplicates_change_nothing_and_are_republished(profiles: Profiles) -> None:
    order = track("Order Completed", {"order_id": "o-9", "total": 1200}, user_id="u-d", at=0)
    await profiles.feed(order, order)
    again = await profiles.feed(order)
    assert again.stored == 0
    assert again.duplicates == 1
    assert [e.id for e in again.resolved] == [order.id], "republished in case it was lost"
    customer = await profiles.customer_of("user_id", "u-d")
    row = await profiles.row(customer)
    assert (row["events_count"], row["orders_count"], row["revenue_total"]) == (1, 1, 1200)
    # the same order reported again under another messageId still counts once
    await profiles.feed(
        track("Order Completed", {"order_id": "o-9", "total": 1200}, user_id="u-d", at=1)
    )
    row = await profiles.row(customer)
    assert (row["events_count"], row["orders_count"], row["revenue_total"]) == (2, 1, 1200)


async def test_traits_keep_the_newest_event_time_not_the_newest_arrival(
    profiles: Profiles,
) -> None:
    await profiles.feed(raw("identify", user_id="u-t", traits={"city": "Osaka"}, at=10))
    await profiles.feed(raw("identify", user_id="u-t", traits={"city": "Kyoto", "age": 30}, at=5))
    row = await profiles.row(await profiles.customer_of("user_id", "u-t"))
    assert row["traits"] == {"city": "Osaka", "age": 30}


async def test_refunds_reduce_revenue_in_any_order(profiles: Profiles) -> None:
    await profiles.feed(
        track("Order Refunded", {"order_id": "r-1", "total": 400}, user_id="u-r", at=5),
        track("Order Refunded", {"order_id": "r-2"}, user_id="u-r", at=6),
    )
    await profiles.feed(
        track("Order Completed", {"order_id": "r-1", "total": 1000}, user_id="u-r", at=1),
        track("Order Completed", {"order_id": "r-2", "total": 700}, user_id="u-r", at=2),
        track("Order Completed", {"order_id": "r-3", "revenue": 50}, user_id="u-r", at=3),
    )
    row = await profiles.row(await profiles.customer_of("user_id", "u-r"))
    assert row["orders_count"] == 3
    assert row["revenue_total"] == 600 + 0 + 50
