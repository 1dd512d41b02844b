"""Two consumers resolving the same people at once (their anonymous and known events travel on
different partitions) end with one customer per person and exact counts."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import sqlalchemy.exc

from kizuna.envelope import Envelope
from kizuna_profile.adapters.store import ConcurrentChange
from tests.integration.profile.conftest import Profiles, raw, track

PEOPLE = 30


async def consume(profiles: Profiles, stream: Sequence[Envelope], batch: int) -> int:
    """Like the runner: a batch that lost a race is retried from the start."""
    retries = 0
    for start in range(0, len(stream), batch):
        while True:
            try:
                await profiles.feed(*stream[start : start + batch])
                break
            except (ConcurrentChange, sqlalchemy.exc.DBAPIError):
                retries += 1
    return retries


async def test_concurrent_consumers_agree_on_people_and_counts(profiles: Profiles) -> None:
    by_anonymous: list[Envelope] = []
    by_user: list[Envelope] = []
    for p in range(PEOPLE):
        by_anonymous += [
            raw("page", anonymous_id=f"a{p}", at=p),
            track("Product Added", {"product_id": "x", "price": 1}, anonymous_id=f"a{p}", at=p),
            raw(
                "identify",
                user_id=f"u{p}",
                anonymous_id=f"a{p}",
                traits={"email": f"p{p}@example.com"},
                at=p + 1,
            ),
        ]
        by_user += [
            raw("identify", user_id=f"u{p}", traits={"email": f"P{p}@example.com"}, at=p),
            track(
                "Order Completed",
                {"order_id": f"o{p}", "total": 100 + p},
                user_id=f"u{p}",
                at=p + 2,
            ),
            raw(
                "identify",
                anonymous_id=f"phone{p}",
                traits={"email": f"p{p}@example.com"},
                at=p + 3,
            ),
        ]
    await asyncio.gather(
        consume(profiles, by_anonymous, 7),
        consume(profiles, by_user, 5),
        consume(profiles, list(reversed(by_user)), 11),  # a redelivery racing the first
    )
    assert await profiles.count("SELECT count(*) FROM profile_customers") == PEOPLE
    assert await profiles.count("SELECT count(*) FROM profile_events") == 6 * PEOPLE
    for p in range(PEOPLE):
        customer = await profiles.customer_of("user_id", f"u{p}")
        for kind, value in (
            ("anonymous_id", f"a{p}"),
            ("anonymous_id", f"phone{p}"),
            ("email", f"p{p}@example.com"),
        ):
            assert await profiles.customer_of(kind, value) == customer
        row = await profiles.row(customer)
        assert (row["events_count"], row["orders_count"], row["revenue_total"]) == (6, 1, 100 + p)
