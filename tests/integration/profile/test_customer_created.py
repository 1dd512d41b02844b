"""``customer.created`` on customer-lifecycle: published when identity resolution (raw events,
imports) first makes a customer record, never for a merge or a later event of the same person,
and again under the same id when the creating event is redelivered (ADR 0004), so consumers
dedupe it. Runs the real consumer path against real PostgreSQL, on both buses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kizuna import topics
from kizuna.bus.factory import bus_from_settings
from kizuna.db import create_engine
from kizuna.envelope import Envelope
from kizuna.settings import KizunaSettings
from tests.integration.profile.conftest import (
    ProfileApi,
    Profiles,
    profile_settings,
    raw,
    track,
)

CREATED = "customer.created"


@pytest.fixture(params=["postgres", pytest.param("kafka", marks=pytest.mark.kafka)])
async def profiles(
    request: pytest.FixtureRequest, settings: KizunaSettings, topic_prefix: str
) -> AsyncIterator[Profiles]:
    """The conftest's ``profiles`` (and so ``profile_api``), on each bus in turn."""
    bus_url = "postgres"
    if request.param == "kafka":
        bus_url = f"kafka://{request.getfixturevalue('kafka_bootstrap')}"
    configured = profile_settings(settings, bus_url=bus_url, topic_prefix=topic_prefix)
    engine = create_engine(configured.database_dsn(), pool_size=2)
    bus = bus_from_settings(configured)
    await bus.start()
    await bus.ensure_topics(topics.ALL_TOPICS)
    try:
        yield Profiles(engine, bus, configured)
    finally:
        await bus.close()
        await engine.dispose()


def created(events: list[Envelope]) -> list[Envelope]:
    return [e for e in events if e.type == CREATED]


def expected(customer: str, cause: Envelope, *, known: bool) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "first_seen_at": cause.occurred_at.isoformat(),
        "cause_event_id": cause.id,
        "known": known,
    }


async def test_a_new_anonymous_visitor_is_created_once_and_identifying_them_creates_nobody(
    profiles: Profiles,
) -> None:
    visit = raw("page", anonymous_id="anon-1", name="Home", at=3, message_id="visit-1")
    outcome = await profiles.feed(visit)
    customer = await profiles.customer_of("anonymous_id", "anon-1")
    [announced] = outcome.lifecycle
    assert (announced.id, announced.type, announced.customer_key) == (
        f"created:{customer}",
        CREATED,
        customer,
    )
    assert announced.payload == expected(customer, visit, known=False)
    assert announced.occurred_at == visit.occurred_at

    # the same visitor tells who they are: the record existed already
    identify = raw(
        "identify",
        user_id="u-1",
        anonymous_id="anon-1",
        traits={"email": "hanako@example.jp"},
        at=5,
    )
    later = await profiles.feed(identify, track("Product Viewed", anonymous_id="anon-1", at=6))
    assert later.lifecycle == []
    assert await profiles.customer_of("user_id", "u-1") == customer

    on_bus = await profiles.topic(topics.CUSTOMER_LIFECYCLE, 1)
    assert [(e.id, e.bus_key) for e in on_bus] == [
        (f"created:{customer}", f"{visit.workspace_id}:{customer}")
    ]
    assert on_bus[0].payload == expected(customer, visit, known=False)


async def test_an_event_revealing_a_new_user_id_creates_a_known_customer(
    profiles: Profiles,
) -> None:
    await profiles.feed(raw("page", anonymous_id="someone-else", name="Home", at=0))
    signup = raw(
        "identify",
        user_id="u-new",
        anonymous_id="anon-new",
        traits={"email": "new@example.jp", "firstName": "Aiko"},
        at=7,
        message_id="signup-1",
    )
    outcome = await profiles.feed(signup)
    customer = await profiles.customer_of("user_id", "u-new")
    assert customer != await profiles.customer_of("anonymous_id", "someone-else")
    assert [(e.id, e.payload) for e in outcome.lifecycle] == [
        (f"created:{customer}", expected(customer, signup, known=True))
    ]
    on_bus = await profiles.topic(topics.CUSTOMER_LIFECYCLE, 2)
    assert sorted(e.payload["known"] for e in created(on_bus)) == [False, True]
    assert not any("new@example.jp" in e.to_bytes().decode() for e in on_bus), "no personal data"
    assert not any("Aiko" in e.to_bytes().decode() for e in on_bus)


async def test_redelivery_of_the_creating_event_announces_the_same_id_again(
    profiles: Profiles,
) -> None:
    first = raw("page", anonymous_id="anon-r", name="Home", at=1, message_id="r-1")
    second = raw("identify", anonymous_id="anon-r", user_id="u-r", at=2, message_id="r-2")
    outcome = await profiles.feed(second, first)  # one batch, one new person: r-1 created it
    customer = await profiles.customer_of("user_id", "u-r")
    original = outcome.lifecycle
    assert [(e.id, e.payload) for e in original] == [
        (f"created:{customer}", expected(customer, first, known=False))
    ], "the creating event is the batch's smallest id, as for a merge's cause"

    # a crash after the commit lost the publish: the redelivered batch announces it again
    again = await profiles.feed(second, first)
    assert (again.stored, again.duplicates) == (0, 2)
    assert [(e.id, e.payload) for e in again.lifecycle] == [(e.id, e.payload) for e in original]
    # the event that did not create the customer, seen again, announces nothing
    assert (await profiles.feed(second)).lifecycle == []

    on_bus = await profiles.topic(topics.CUSTOMER_LIFECYCLE, 2)
    assert {e.id for e in on_bus} == {f"created:{customer}"}, "consumers dedupe by this id"
    assert all(e.payload == original[0].payload for e in on_bus)
    assert await profiles.count("SELECT count(*) FROM profile_customers") == 1


async def test_a_merge_of_two_existing_customers_creates_nobody(profiles: Profiles) -> None:
    await profiles.feed(raw("identify", user_id="u-m", at=0), raw("page", anonymous_id="kiosk"))
    known = await profiles.customer_of("user_id", "u-m")
    anonymous = await profiles.customer_of("anonymous_id", "kiosk")
    assert known != anonymous
    linking = raw("identify", user_id="u-m", anonymous_id="kiosk", at=9)
    outcome = await profiles.feed(linking)
    assert [(e.type, e.id) for e in outcome.lifecycle] == [
        ("customer.merged", f"merged:{anonymous}")
    ]
    assert [(e.type, e.id) for e in (await profiles.feed(linking)).lifecycle] == [
        ("customer.merged", f"merged:{anonymous}")
    ], "the merge is republished, still nobody is created"

    on_bus = await profiles.topic(topics.CUSTOMER_LIFECYCLE, 4)
    assert sorted(e.id for e in created(on_bus)) == sorted(
        [f"created:{known}", f"created:{anonymous}"]
    ), "one each when they were first seen, none for the merge"


async def finished(api: ProfileApi, import_id: str) -> None:
    async with asyncio.timeout(60):
        while True:
            found = await api.client.get(f"/v1/imports/{import_id}", headers=api.admin)
            if found.json()["status"] == "completed":
                return
            assert found.json()["status"] != "failed", found.text
            await asyncio.sleep(0.1)


async def test_imported_customers_are_created_once_and_back_office_changes_create_nobody(
    profile_api: ProfileApi,
) -> None:
    api, profiles, ws = profile_api, profile_api.profiles, profile_api.workspace_id
    await profiles.feed(raw("identify", user_id="u-old", at=0, workspace_id=ws))
    old = await profiles.customer_of("user_id", "u-old", workspace_id=ws)
    csv = (
        b"user_id,email,first_name,created_at,email_consent\n"
        b"u-old,old@example.jp,Old,,\n"
        b"u-imp,imp@example.jp,Imp,2025-05-01T10:00:00+09:00,true\n"
    )
    for _ in range(2):  # the same file again: the same events, the same announcements
        started = await api.client.post(
            "/v1/imports",
            params={"kind": "customers"},
            content=csv,
            headers={**api.admin, "Content-Type": "text/csv"},
        )
        assert started.status_code == 202, started.text
        await finished(api, started.json()["id"])
    imported = await profiles.customer_of("user_id", "u-imp", workspace_id=ws)
    changed = await api.client.patch(
        f"/v1/customers/{imported}", json={"traits": {"plan": "gold"}}, headers=api.admin
    )
    assert changed.status_code == 200, changed.text

    on_bus = created(await profiles.topic(topics.CUSTOMER_LIFECYCLE, 3))
    assert {e.id for e in on_bus} == {f"created:{old}", f"created:{imported}"}
    assert [e.customer_key for e in on_bus].count(old) == 1, "u-old's import row created nobody"
    copies = [e.payload for e in on_bus if e.customer_key == imported]
    assert len(copies) == 2, "announced again with the second import, like its resolved events"
    assert copies[0] == copies[1]
    assert copies[0]["known"] is True
    assert copies[0]["first_seen_at"] == "2025-05-01T01:00:00+00:00"
    assert copies[0]["cause_event_id"].startswith(f"import:{ws}:customer:")
