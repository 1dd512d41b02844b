"""``customer.created``: which plan creates a customer, from which event, and how a redelivery of
that event recognises it without asking the database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kizuna.envelope import Envelope
from kizuna_profile import handlers
from kizuna_profile.domain.identity import Identifier, identifiers_of, names_a_person
from kizuna_profile.domain.resolution import EventRefs, KnownCustomer, plan

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WS = "ws"


def raw(event_id: str, **payload: Any) -> Envelope:
    return Envelope(
        id=event_id,
        type="identify",
        workspace_id=WS,
        customer_key=str(payload.get("userId") or payload.get("anonymousId")),
        occurred_at=T0,
        received_at=T0,
        payload={"type": "identify", "messageId": event_id, **payload},
    )


def refs_of(*events: Envelope) -> list[EventRefs]:
    return [EventRefs(e.id, tuple(identifiers_of(e))) for e in events]


def test_a_new_customer_is_named_after_the_event_that_created_it_alone() -> None:
    anonymous = raw("e1", anonymousId="a-1")
    identify = raw("e2", anonymousId="a-1", userId="u-1")  # stronger, but not the cause
    result = plan(refs_of(identify, anonymous), {}, {}, handlers.new_customer_id(WS))
    [customer] = set(result.customer_of_event)
    assert result.created_by == {customer: 1}, "e1 is the smallest id of the component"
    assert customer == handlers.new_customer_id(WS)(identifiers_of(anonymous), "e1")
    again = handlers.created_again(WS, [identify, anonymous], {"e1": customer, "e2": customer})
    assert [(e.id, e.payload["cause_event_id"]) for e in again] == [(f"created:{customer}", "e1")]


def test_events_of_known_customers_and_merges_create_nobody() -> None:
    owners = {Identifier("user_id", "u-1"): "c-1", Identifier("anonymous_id", "a-2"): "c-2"}
    known = {"c-1": KnownCustomer("c-1", True, T0), "c-2": KnownCustomer("c-2", False, T0)}
    joining = raw("e9", userId="u-1", anonymousId="a-2")
    result = plan(refs_of(joining), owners, known, handlers.new_customer_id(WS))
    assert result.merges == {"c-2": ("c-1", "e9")}
    assert result.created_by == {}
    assert handlers.created_again(WS, [joining], {"e9": "c-1"}) == []


def test_created_says_whether_the_creating_event_named_a_person() -> None:
    visit, signup = (
        raw("v", anonymousId="a"),
        raw("s", anonymousId="b", traits={"phone": "0312345678"}),
    )
    for event, known in ((visit, False), (signup, True)):
        customer = handlers.new_customer_id(WS)(identifiers_of(event), event.id)
        created = handlers.created_event(WS, customer, event, identifiers_of(event))
        assert (created.id, created.type, created.customer_key) == (
            f"created:{customer}",
            "customer.created",
            customer,
        )
        assert created.payload == {
            "customer_id": customer,
            "first_seen_at": T0.isoformat(),
            "cause_event_id": event.id,
            "known": known,
        }
    assert not names_a_person([Identifier("anonymous_id", "a"), Identifier("line_user_id", "U1")])
    assert names_a_person([Identifier("email", "x@example.com")])


def test_a_stored_event_that_did_not_create_its_customer_is_not_announced_again() -> None:
    first, later = raw("e1", anonymousId="a-1"), raw("e2", anonymousId="a-1", userId="u-1")
    customer = handlers.new_customer_id(WS)(identifiers_of(first), first.id)
    assert handlers.created_again(WS, [later], {"e2": customer}) == []
    survivor = "c-someone-else"  # the customer first created was merged into another since
    assert handlers.created_again(WS, [first], {"e1": survivor}) == []
