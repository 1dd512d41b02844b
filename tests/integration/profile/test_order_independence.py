"""Property: any permutation, duplication and batching of the same events gives the same
customers (ADR 0005). Runs the real consumer path against real PostgreSQL."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kizuna.envelope import Envelope
from kizuna_profile.domain import cart, codec
from tests.integration.profile.conftest import Profiles, raw, track


def story(ws: str) -> list[Envelope]:
    """Three people, reached through anonymous ids, user ids, an alias and a shared email."""
    kw: dict[str, Any] = {"workspace_id": ws}
    return [
        raw("page", anonymous_id="a1", name="Home", at=0, message_id="e01", **kw),
        track(
            "Product Viewed",
            {"product_id": "p1", "price": 10},
            anonymous_id="a1",
            at=1,
            message_id="e02",
            **kw,
        ),
        track(
            "Product Added",
            {"product_id": "p1", "price": 10, "quantity": 2},
            anonymous_id="a1",
            at=2,
            message_id="e03",
            **kw,
        ),
        raw(
            "identify",
            user_id="u1",
            anonymous_id="a1",
            traits={"email": "one@example.com", "city": "Osaka"},
            at=3,
            message_id="e04",
            **kw,
        ),
        track(
            "Product Removed",
            {"product_id": "p1", "quantity": 1},
            user_id="u1",
            at=4,
            message_id="e05",
            **kw,
        ),
        track(
            "Order Completed",
            {"order_id": "o1", "total": 100},
            user_id="u1",
            at=5,
            message_id="e06",
            **kw,
        ),
        track(
            "Product Added",
            {"product_id": "p2", "price": 7},
            user_id="u1",
            at=6,
            message_id="e07",
            **kw,
        ),
        raw(
            "identify",
            anonymous_id="a2",
            traits={"email": "ONE@example.com", "city": "Kobe"},
            at=7,
            message_id="e08",
            **kw,
        ),
        track(
            "Consent Updated",
            {"channel": "email", "status": "granted"},
            anonymous_id="a2",
            at=7,
            message_id="e09",
            **kw,
        ),
        track("Unsubscribed", {}, user_id="u1", at=7, message_id="e10", **kw),
        track(
            "Order Refunded",
            {"order_id": "o1", "total": 30},
            anonymous_id="a2",
            at=8,
            message_id="e11",
            **kw,
        ),
        raw("alias", user_id="u2", previousId="a3", at=9, message_id="e12", **kw),
        track(
            "Order Completed",
            {"order_id": "o2", "total": 50},
            anonymous_id="a3",
            at=2,
            message_id="e13",
            **kw,
        ),
        raw("identify", user_id="u2", traits={"city": "Nara"}, at=1, message_id="e14", **kw),
        track("Email Opened", {"message_id": "s1"}, user_id="u2", at=11, message_id="e15", **kw),
        raw("identify", user_id="u3", traits={"city": "Sendai"}, at=3, message_id="e16", **kw),
        track(
            "Order Completed",
            {"order_id": "o3", "total": 20},
            user_id="u3",
            at=4,
            message_id="e17",
            **kw,
        ),
        track(
            "Order Completed",
            {"order_id": "o3", "total": 20},
            user_id="u3",
            at=4,
            message_id="e18",
            **kw,
        ),
    ]


STORY_LENGTH = len(story("x"))


async def snapshot(profiles: Profiles, ws: str) -> list[dict[str, Any]]:
    """Every customer of the workspace, named by its identifiers rather than its id."""
    async with profiles.engine.connect() as conn:
        customers = (
            (
                await conn.execute(
                    sa.text("SELECT * FROM profile_customers WHERE workspace_id = :ws"), {"ws": ws}
                )
            )
            .mappings()
            .all()
        )
        identifiers = await conn.execute(
            sa.text(
                "SELECT customer_id, kind || ':' || value AS i FROM profile_identifiers"
                " WHERE workspace_id = :ws"
            ),
            {"ws": ws},
        )
        events = await conn.execute(
            sa.text("SELECT customer_id, event_id FROM profile_events WHERE workspace_id = :ws"),
            {"ws": ws},
        )
        by_customer: dict[str, set[str]] = {}
        for row in identifiers:
            by_customer.setdefault(row.customer_id, set()).add(row.i)
        events_of: dict[str, set[str]] = {}
        for row in events:
            events_of.setdefault(row.customer_id, set()).add(row.event_id)
    result = []
    for c in customers:
        record = codec.from_json(c["record"])
        current = cart.current(record.cart)
        result.append(
            {
                "identifiers": sorted(by_customer[c["id"]]),
                "events": sorted(events_of[c["id"]]),
                "user_id": c["user_id"],
                "record": c["record"],
                "traits": c["traits"],
                "first_seen": c["first_seen_at"],
                "last_seen": c["last_seen_at"],
                "orders": (c["orders_count"], c["revenue_total"], c["last_order_at"]),
                "cart": (current.items, current.value, current.updated_at),
            }
        )
    return sorted(result, key=lambda c: c["identifiers"])


def batches(events: list[Envelope], cuts: list[int]) -> list[list[Envelope]]:
    bounds = sorted({0, len(events), *(c % (len(events) + 1) for c in cuts)})
    return [events[a:b] for a, b in itertools.pairwise(bounds) if events[a:b]]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    order=st.permutations(range(STORY_LENGTH)),
    repeats=st.lists(st.integers(0, STORY_LENGTH - 1), max_size=6),
    cuts=st.lists(st.integers(0, 40), max_size=6),
)
async def test_any_order_duplication_and_batching_gives_the_same_customers(
    profiles: Profiles, order: list[int], repeats: list[int], cuts: list[int]
) -> None:
    reference_ws = f"ref_{uuid.uuid4().hex[:8]}"
    await profiles.feed(*story(reference_ws))
    expected = await snapshot(profiles, reference_ws)
    assert len(expected) == 3, "u1 (with a1, a2), u2 (with a3), u3"

    ws = f"perm_{uuid.uuid4().hex[:8]}"
    events = story(ws)
    shuffled = [events[i] for i in order] + [events[i] for i in repeats]
    for batch in batches(shuffled, cuts):
        await profiles.feed(*batch)
    assert await snapshot(profiles, ws) == expected
