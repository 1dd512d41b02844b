"""Merging two customers that are each known by a userId (issue 4, ADR 0005): an alias or an
identify carrying an email already known for the other userId reveals they are one person.
The survivor is the one known by a userId, then the oldest, then the smallest id; it holds
both histories, identifiers, traits (newest by event time), consent (newest statement) and
orders, both userIds resolve to it, ``customer.merged`` is published, and a replay changes
nothing."""

from __future__ import annotations

from typing import Any

import pytest

from kizuna import topics
from kizuna.envelope import Envelope
from tests.integration.profile.conftest import T0, ProfileApi, raw, track

TABLES = (
    "profile_customers",
    "profile_identifiers",
    "profile_events",
    "profile_orders",
    "profile_merges",
)


def consent(channel: str, status: str, **kw: Any) -> Envelope:
    return track("Consent Updated", {"channel": channel, "status": status, "source": "form"}, **kw)


def history_of_a(ws: str, first: int) -> list[Envelope]:
    """u-a: first seen at ``first``; Osaka early, gold late, an email opt-in late."""
    a = {"user_id": "u-a", "workspace_id": ws}
    return [
        raw(
            "identify",
            anonymous_id="anon-a",
            traits={"email": "shared@example.com", "firstName": "Aiko", "city": "Osaka"},
            at=first,
            **a,
        ),
        raw("page", name="Home", at=2, **a),
        track("Order Completed", {"order_id": "o-a1", "total": 3000}, at=3, **a),
        consent("line", "revoked", at=3, **a),
        raw("identify", traits={"plan": "gold"}, at=8, **a),
        track("Order Completed", {"order_id": "o-a2", "total": 2000}, at=9, **a),
        consent("email", "granted", at=9, **a),
        # the same checkout, reported from both devices: it counts once, as first reported
        track("Order Completed", {"order_id": "o-s", "total": 1000}, at=10, **a),
    ]


def history_of_b(ws: str, first: int) -> list[Envelope]:
    """u-b, fed after u-a: its plan and email statement arrive later but are older."""
    b = {"user_id": "u-b", "workspace_id": ws}
    return [
        raw("identify", anonymous_id="anon-b", traits={"lastName": "Sato"}, at=first, **b),
        consent("email", "revoked", at=2, **b),  # older than u-a's opt-in: loses
        raw("identify", traits={"plan": "silver"}, at=4, **b),  # older than gold: loses
        consent("sms", "granted", at=4, **b),
        track("Order Completed", {"order_id": "o-b1", "total": 1500}, at=5, **b),
        raw("identify", traits={"city": "Kyoto"}, at=6, **b),  # newer than Osaka: wins
        track("Order Refunded", {"order_id": "o-b1", "total": 500}, at=7, **b),
        consent("line", "granted", at=8, **b),  # newer than u-a's opt-out: wins
        track("Order Completed", {"order_id": "o-s", "total": 1000}, at=11, **b),
    ]


def linking_event(link: str, ws: str) -> Envelope:
    if link == "alias":
        return raw("alias", user_id="u-b", previousId="u-a", at=7, workspace_id=ws)
    # arrives last, but its plan is older than u-a's gold; its email is the newest
    return raw(
        "identify",
        user_id="u-b",
        traits={"email": "Shared@Example.com", "plan": "bronze"},
        at=7,
        workspace_id=ws,
    )


async def get(api: ProfileApi, path: str, **params: str) -> dict[str, Any]:
    response = await api.client.get(path, params=params, headers=api.admin)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def timeline_ids(api: ProfileApi, reference: str) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "4", **({"cursor": cursor} if cursor else {})}
        page = await get(api, f"/v1/customers/{reference}/events", **params)
        ids.extend(e["id"] for e in page["events"])
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


async def table_counts(api: ProfileApi) -> dict[str, int]:
    return {
        table: await api.profiles.count(
            f"SELECT count(*) FROM {table} WHERE workspace_id = :ws",
            ws=api.workspace_id,
        )
        for table in TABLES
    }


@pytest.mark.parametrize("link", ["alias", "identify"])
@pytest.mark.parametrize(
    ("a_first", "b_first"),
    [(0, 1), (1, 0), (0, 0)],
    ids=["u-a-older", "u-b-older", "same-first-seen"],
)
async def test_two_known_customers_merge_into_one_with_everything(
    profile_api: ProfileApi, link: str, a_first: int, b_first: int
) -> None:
    api, profiles, ws = profile_api, profile_api.profiles, profile_api.workspace_id
    a_events, b_events = history_of_a(ws, a_first), history_of_b(ws, b_first)
    await profiles.feed(*a_events)
    await profiles.feed(*b_events)
    a = await profiles.customer_of("user_id", "u-a", workspace_id=ws)
    b = await profiles.customer_of("user_id", "u-b", workspace_id=ws)
    assert a != b, "nothing links them yet"
    row_a, row_b = await profiles.row(a, ws), await profiles.row(b, ws)
    assert (row_a["orders_count"], row_a["revenue_total"]) == (3, 6000)
    assert (row_b["orders_count"], row_b["revenue_total"]) == (1, 1000), "o-s is u-a's"
    assert (row_a["events_count"], row_b["events_count"]) == (len(a_events), len(b_events))

    # ADR 0005: both are known by a userId, so the oldest first_seen, then the smallest id
    if a_first != b_first:
        survivor, absorbed = (a, b) if a_first < b_first else (b, a)
    else:
        survivor, absorbed = min(a, b), max(a, b)

    linking = linking_event(link, ws)
    outcome = await profiles.feed(linking)
    assert outcome.stored == 1
    assert [
        (e.type, e.payload["absorbed_id"], e.payload["survivor_id"], e.payload["cause_event_id"])
        for e in outcome.lifecycle
    ] == [("customer.merged", absorbed, survivor, linking.id)]
    assert [e.customer_key for e in outcome.resolved] == [survivor]

    # one customer; both userIds, the survivor's id and the absorbed id all lead to it
    assert (
        await profiles.count(
            "SELECT count(*) FROM profile_customers WHERE workspace_id = :ws", ws=ws
        )
        == 1
    )
    body = await get(api, f"/v1/customers/{survivor}")
    assert body["id"] == survivor
    for reference in ("u-a", "u-b", absorbed):
        assert await get(api, f"/v1/customers/{reference}") == body, reference
    assert body["user_id"] in {"u-a", "u-b"}
    expected_identifiers = {
        "anonymous_id": ["anon-a", "anon-b"],
        "email": ["shared@example.com"],
        "user_id": ["u-a", "u-b"],
    }
    if link == "alias":
        expected_identifiers["previous_id"] = ["u-a"]
    assert body["identifiers"] == expected_identifiers

    # both histories (and the linking event) are on the survivor's timeline, newest first
    every_event = {e.id for e in (*a_events, *b_events, linking)}
    timeline = await timeline_ids(api, "u-a")
    assert len(timeline) == len(every_event)
    assert set(timeline) == every_event
    assert await timeline_ids(api, "u-b") == timeline
    assert (
        await profiles.count(
            "SELECT count(*) FROM profile_events WHERE workspace_id = :ws AND customer_id <> :c",
            ws=ws,
            c=survivor,
        )
        == 0
    )

    # counters and facts add up exactly
    facts = body["facts"]
    assert facts["events_count"] == len(every_event)
    assert facts["orders_count"] == 4, "o-a1, o-a2, o-b1 and o-s once"
    assert facts["revenue_total"] == 3000 + 2000 + (1500 - 500) + 1000
    assert facts["average_order_value"] == 1750
    assert facts["first_order_at"] == (T0.replace(minute=3)).isoformat()
    assert facts["last_order_at"] == (T0.replace(minute=10)).isoformat()
    assert body["first_seen_at"] == T0.isoformat()
    assert body["last_seen_at"] == (T0.replace(minute=11)).isoformat()

    # traits: the newest by event time, whichever record or arrival it came from
    assert body["traits"] == {
        "email": "shared@example.com" if link == "alias" else "Shared@Example.com",
        "firstName": "Aiko",
        "lastName": "Sato",
        "city": "Kyoto",
        "plan": "gold",
    }
    assert body["profile"]["email"] == "shared@example.com"

    # consent: the newest statement per channel
    assert {c: (s["status"], s["at"]) for c, s in body["consent"].items()} == {
        "email": ("granted", T0.replace(minute=9).isoformat()),
        "line": ("granted", T0.replace(minute=8).isoformat()),
        "sms": ("granted", T0.replace(minute=4).isoformat()),
    }
    assert body["suppression"] == {}

    # customer.merged on the lifecycle topic, once, for the absorbed customer; the linking
    # event created nobody (customer.created came only with each history's first event)
    lifecycle = await profiles.topic(topics.CUSTOMER_LIFECYCLE, 3)
    assert sorted(e.id for e in lifecycle if e.type == "customer.created") == sorted(
        [f"created:{a}", f"created:{b}"]
    )
    on_bus = [e for e in lifecycle if e.type == "customer.merged"]
    assert [(e.id, e.type, e.customer_key) for e in on_bus] == [
        (f"merged:{absorbed}", "customer.merged", survivor)
    ]
    assert on_bus[0].payload == {
        "absorbed_id": absorbed,
        "survivor_id": survivor,
        "cause_event_id": linking.id,
    }

    # replaying the linking event, then the whole story, changes nothing
    counts = await table_counts(api)
    again = await profiles.feed(linking)
    assert (again.stored, again.duplicates) == (0, 1)
    assert [e.id for e in again.lifecycle] == [f"merged:{absorbed}"], "republished, same id"
    everything = await profiles.feed(*a_events, *b_events, linking)
    assert everything.stored == 0
    assert everything.duplicates == len(every_event)
    assert await table_counts(api) == counts
    for reference in (survivor, "u-a", "u-b", absorbed):
        assert await get(api, f"/v1/customers/{reference}") == body, reference
    assert await timeline_ids(api, survivor) == timeline
    republished = await profiles.topic(topics.CUSTOMER_LIFECYCLE, 4)
    assert {e.id for e in republished if e.type == "customer.merged"} == {f"merged:{absorbed}"}, (
        "never a second merge"
    )
    assert {e.id for e in republished if e.type == "customer.created"} == {
        f"created:{a}",
        f"created:{b}",
    }, "never a new customer"

    # later events for either userId land on the survivor
    later = await profiles.feed(
        track("Product Viewed", {"product_id": "p1"}, user_id="u-a", at=30, workspace_id=ws),
        track("Product Viewed", {"product_id": "p2"}, user_id="u-b", at=31, workspace_id=ws),
    )
    assert [e.customer_key for e in later.resolved] == [survivor, survivor]
    assert later.lifecycle == []
    assert (await profiles.row(survivor, ws))["events_count"] == len(every_event) + 2


async def test_a_user_id_beats_an_older_anonymous_record(profile_api: ProfileApi) -> None:
    """One identify joins three customers: the oldest is anonymous, so it does not survive."""
    profiles, ws = profile_api.profiles, profile_api.workspace_id
    await profiles.feed(
        track(
            "Order Completed",
            {"order_id": "o-x", "total": 700},
            anonymous_id="kiosk",
            at=0,
            workspace_id=ws,
        ),
        raw("identify", user_id="u-a", traits={"email": "a@example.com"}, at=5, workspace_id=ws),
        raw("identify", user_id="u-b", at=6, workspace_id=ws),
    )
    x = await profiles.customer_of("anonymous_id", "kiosk", workspace_id=ws)
    a = await profiles.customer_of("user_id", "u-a", workspace_id=ws)
    b = await profiles.customer_of("user_id", "u-b", workspace_id=ws)
    assert len({x, a, b}) == 3
    linking = raw(
        "identify",
        user_id="u-b",
        anonymous_id="kiosk",
        traits={"email": "A@example.com"},
        at=9,
        workspace_id=ws,
    )
    outcome = await profiles.feed(linking)
    assert sorted(
        (e.payload["absorbed_id"], e.payload["survivor_id"]) for e in outcome.lifecycle
    ) == sorted([(x, a), (b, a)]), "known by a userId first, then the oldest"
    body = await get(profile_api, "/v1/customers/u-b")
    assert body["id"] == a == (await get(profile_api, "/v1/customers/u-a"))["id"]
    assert body["first_seen_at"] == T0.isoformat(), "the anonymous history came along"
    assert (body["facts"]["orders_count"], body["facts"]["revenue_total"]) == (1, 700)
    assert body["facts"]["events_count"] == 4
    on_bus = await profiles.topic(topics.CUSTOMER_LIFECYCLE, 5)  # 3 created, 2 merged
    merges = [e.id for e in on_bus if e.type == "customer.merged"]
    assert sorted(merges) == sorted([f"merged:{x}", f"merged:{b}"])
