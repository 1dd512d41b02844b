"""A batch whose events change only facts leaves the stored record JSON as it is, and the facts
are read from their columns, also for records written when the JSON repeated them (ADR 0010)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from kizuna_profile.adapters import reads
from tests.integration.profile.conftest import T0, Profiles, raw, track


async def mark_record(profiles: Profiles, customer: str, record: dict[str, Any]) -> None:
    async with profiles.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE profile_customers SET record = CAST(:r AS jsonb)"
                " WHERE workspace_id = 'ws_test' AND id = :id"
            ),
            {"r": orjson.dumps(record).decode(), "id": customer},
        )


async def test_facts_only_events_update_the_columns_and_leave_the_json_untouched(
    profiles: Profiles,
) -> None:
    await profiles.feed(
        raw("identify", user_id="p1", at=1, traits={"plan": "gold"}),
        track("Product Added", {"product_id": "tea", "price": 900}, user_id="p1", at=2),
        track("Product Viewed", {"product_id": "cup"}, user_id="p1", at=3),
    )
    customer = await profiles.customer_of("user_id", "p1")
    before = await profiles.row(customer)
    # A key no encoder writes: it survives only if the JSON is not rewritten.
    await mark_record(profiles, customer, {**before["record"], "marker": 1})

    await profiles.feed(
        raw("page", user_id="p1", at=10, name="Home"),
        track("Email Opened", {}, user_id="p1", at=11),
        track("Signed In", {}, user_id="p1", at=12),
    )
    after = await profiles.row(customer)

    assert after["record"] == {**before["record"], "marker": 1}
    assert after["traits"] == before["traits"] == {"plan": "gold"}
    assert after["events_count"] == 6
    assert after["last_seen_at"] == T0 + timedelta(minutes=12)
    assert after["last_email_opened_at"] == T0 + timedelta(minutes=11)

    await profiles.feed(raw("identify", user_id="p1", at=20, traits={"plan": "platinum"}))
    changed = await profiles.row(customer)
    assert "marker" not in changed["record"], "parts changed: the JSON is written anew"
    assert changed["traits"] == {"plan": "platinum"}
    assert changed["events_count"] == 7


async def test_facts_left_in_an_older_record_json_are_ignored(profiles: Profiles) -> None:
    await profiles.feed(
        raw("identify", user_id="p2", at=1, traits={"plan": "basic"}),
        track("Email Opened", {}, user_id="p2", at=2),
    )
    customer = await profiles.customer_of("user_id", "p2")
    stale = {
        **(await profiles.row(customer))["record"],
        "events_count": 999,
        "first_seen_at": "2001-01-01T00:00:00+00:00",
        "last_email_opened_at": None,
    }
    await mark_record(profiles, customer, stale)
    await profiles.feed(track("Product Viewed", {"product_id": "pot"}, user_id="p2", at=5))

    row = await profiles.row(customer)
    assert "events_count" not in row["record"], "rewritten with its parts only"
    assert row["events_count"] == 3
    async with profiles.engine.connect() as conn:
        view = await reads.customer_view(conn, "ws_test", customer)
    assert view is not None
    assert view["facts"]["events_count"] == 3
    assert view["facts"]["last_email_opened_at"] is not None, "from the column, not the JSON"
    assert [p["product_id"] for p in view["facts"]["last_viewed_products"]] == ["pot"]
