"""The record's parts combine in any order: observing events and merging records commute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kizuna.envelope import Envelope
from kizuna_profile.domain import cart, codec, record
from kizuna_profile.domain.identity import Identifier
from kizuna_profile.domain.resolution import EventRefs, KnownCustomer, plan

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(index: int, minute: int, type_: str, payload: dict[str, Any]) -> Envelope:
    at = T0 + timedelta(minutes=minute)
    return Envelope(
        id=f"e{index:03d}",
        type=type_,
        workspace_id="ws",
        customer_key="c",
        occurred_at=at,
        received_at=at,
        payload=payload,
    )


def track(event_name: str, **properties: Any) -> tuple[str, dict[str, Any]]:
    return "track", {"event": event_name, "properties": properties}


KINDS = [
    track("Product Added", product_id="p1", price=5),
    track("Product Added", product_id="p2", price=3, quantity=2),
    track("Product Removed", product_id="p1"),
    track("Cart Viewed", products=[{"product_id": "p3", "price": 1, "quantity": 4}]),
    track("Order Completed", order_id="o"),
    track("Product Viewed", product_id="p1", name="Tea"),
    track("Product Viewed", product_id="p4"),
    track("Email Opened"),
    track("Email Link Clicked", machine_suspected=True),
    track("Consent Updated", channel="email", status="granted"),
    track("Consent Updated", channel="email", status="revoked"),
    track("Unsubscribed", channel="line"),
    track("Email Bounced", bounce_type="hard"),
    ("identify", {"traits": {"city": "Osaka"}}),
    ("identify", {"traits": {"city": "Kyoto", "plan": "gold"}}),
    ("identify", {"traits": {"consent": {"email": False, "line": True}}}),
]

EVENTS = st.lists(
    st.tuples(st.sampled_from(range(len(KINDS))), st.integers(0, 10)), max_size=25
).map(lambda items: [event(i, minute, *KINDS[kind]) for i, (kind, minute) in enumerate(items)])


def fold(events: list[Envelope]) -> record.Record:
    value = record.Record()
    for e in events:
        value = record.observe(value, e)
    return value


@given(EVENTS, st.randoms(use_true_random=False), st.integers(0, 25))
def test_any_order_and_any_split_then_merge_give_the_same_record(
    events: list[Envelope], rng: Any, split: int
) -> None:
    expected = fold(events)
    shuffled = list(events)
    rng.shuffle(shuffled)
    assert fold(shuffled) == expected
    left, right = fold(shuffled[:split]), fold(shuffled[split:])
    assert record.merge(left, right) == expected
    assert record.merge(right, left) == expected
    decoded = codec.from_json(
        codec.to_json(expected),
        first_seen_at=expected.first_seen_at,
        last_seen_at=expected.last_seen_at,
        events_count=expected.events_count,
        last_email_opened_at=expected.last_email_opened_at,
        last_email_clicked_at=expected.last_email_clicked_at,
    )
    assert decoded == expected, "the facts come from their columns, the parts from the JSON"


@given(EVENTS, st.integers(0, 25))
def test_writing_only_the_touched_parts_over_the_stored_json_gives_the_whole_record(
    events: list[Envelope], split: int
) -> None:
    """What the handler does for a customer without a merge: the stored JSON's parts that the
    new events do not touch are kept undecoded."""
    stored, delta = fold(events[:split]), fold(events[split:])
    stored_json = {**codec.to_json(stored), "events_count": 99}  # an older JSON's fact
    touched = record.parts_held(delta)
    partial = codec.from_json(stored_json, parts=touched)
    assert record.parts_held(partial) <= touched
    written = codec.with_parts(stored_json, record.merge(partial, delta), touched)
    assert written == codec.to_json(record.merge(stored, delta))


def test_cart_replays_in_event_time_and_order_completed_clears_it() -> None:
    value = fold(
        [
            event(1, 5, *track("Product Removed", product_id="p1", quantity=1)),
            event(2, 1, *track("Product Added", product_id="p1", price=100, quantity=3)),
            event(3, 2, *track("Order Completed", order_id="o1")),
            event(4, 3, *track("Product Added", product_id="p1", price=100, quantity=3)),
        ]
    )
    current = cart.current(value.cart)
    assert [(i["product_id"], i["quantity"]) for i in current.items] == [("p1", 2)]
    assert current.value == 200
    assert current.updated_at == T0 + timedelta(minutes=5)


def test_resolution_joins_alias_twins_in_the_batch_and_keeps_the_known_survivor() -> None:
    refs = [
        EventRefs("e1", (Identifier("anonymous_id", "a"),)),
        EventRefs("e2", (Identifier("user_id", "u"), Identifier("previous_id", "a"))),
        EventRefs("e3", (Identifier("email", "x@example.com"),)),
        EventRefs("e4", (Identifier("user_id", "a"),)),  # same text as the anonymous id
    ]
    owners = {Identifier("email", "x@example.com"): "c-old", Identifier("user_id", "u"): "c-u"}
    known = {
        "c-old": KnownCustomer("c-old", False, T0),
        "c-u": KnownCustomer("c-u", True, T0 + timedelta(days=1)),
    }
    result = plan(refs, owners, known, lambda ids, cause: f"new-{cause}")
    assert result.customer_of_event[:2] == ["c-u", "c-u"]
    assert result.customer_of_event[2] == "c-old"
    assert result.customer_of_event[3] == "c-u", "an alias's previousId matches a userId too"
    assert result.merges == {}
    refs.append(EventRefs("e5", (Identifier("user_id", "u"), Identifier("email", "x@example.com"))))
    merged = plan(refs, owners, known, lambda ids, cause: f"new-{cause}")
    assert merged.merges == {"c-old": ("c-u", "e1")}, "the customer known by a userId survives"


def test_consent_stated_in_identify_traits_counts_like_a_consent_event() -> None:
    folded = fold(
        [
            event(1, 0, "identify", {"traits": {"consent": {"email": True, "fax": True}}}),
            event(2, 5, *track("Consent Updated", channel="email", status="revoked")),
            event(3, 9, "identify", {"traits": {"consent": {"email": True, "line": False}}}),
        ]
    )
    assert {c: s.status for c, s in folded.consent.items()} == {
        "email": "granted",
        "line": "revoked",
    }
    assert folded.consent["email"].source == "traits"
