from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kizuna.envelope import Envelope
from kizuna_profile.domain import traits
from kizuna_profile.domain.identity import Identifier, identifiers_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(type_: str, **payload: Any) -> Envelope:
    key = payload.get("userId") or payload.get("anonymousId") or "x"
    return Envelope.new(type_, "ws", str(key), payload)


def test_identify_reveals_every_identifier_normalized_strongest_first() -> None:
    found = identifiers_of(
        event(
            "identify",
            userId="u-1",
            anonymousId="a-1",
            traits={
                "email": " Hanako@Example.JP ",
                "phone": "+81 90-1234-5678",
                "lineUserId": "U123",
            },
        )
    )
    assert found == [
        Identifier("user_id", "u-1"),
        Identifier("email", "hanako@example.jp"),
        Identifier("phone", "+819012345678"),
        Identifier("line_user_id", "U123"),
        Identifier("anonymous_id", "a-1"),
    ]


def test_alias_joins_previous_and_new_id_and_junk_is_ignored() -> None:
    assert identifiers_of(event("alias", userId="u-2", previousId="a-9")) == [
        Identifier("user_id", "u-2"),
        Identifier("previous_id", "a-9"),
    ]
    assert identifiers_of(
        event("identify", anonymousId="a", traits={"email": "not-an-email", "phone": "call me"})
    ) == [Identifier("anonymous_id", "a")]


UPDATES = st.lists(
    st.tuples(
        st.dictionaries(
            st.sampled_from(["firstName", "plan", "city"]), st.integers(0, 5), max_size=3
        ),
        st.integers(0, 20),  # event time, in minutes; ties happen
        st.sampled_from(["e1", "e2", "e3", "e4"]),
    ),
    max_size=12,
)


def stamped(
    updates: list[tuple[dict[str, int], int, str]],
) -> list[tuple[dict[str, int], traits.Stamp]]:
    return [(values, traits.Stamp(T0 + timedelta(minutes=m), eid)) for values, m, eid in updates]


@given(UPDATES, st.randoms())
def test_traits_are_the_same_whatever_the_order_and_repetition(
    updates: list[tuple[dict[str, int], int, str]], random: Any
) -> None:
    # One event id carries one set of values: a redelivery repeats it exactly.
    by_id = {eid: (values, m) for values, m, eid in updates}
    events = stamped([(values, m, eid) for eid, (values, m) in by_id.items()])
    shuffled = events * 2
    random.shuffle(shuffled)
    assert traits.fold(shuffled) == traits.fold(events)


@given(UPDATES, st.integers(0, 12))
def test_merging_two_customers_equals_one_customer_that_saw_everything(
    updates: list[tuple[dict[str, int], int, str]], split: int
) -> None:
    by_id = {eid: (values, m) for values, m, eid in updates}
    events = stamped([(values, m, eid) for eid, (values, m) in by_id.items()])
    left, right = traits.fold(events[:split]), traits.fold(events[split:])
    assert traits.merge(left, right) == traits.merge(right, left) == traits.fold(events)


def test_an_older_event_arriving_late_does_not_overwrite() -> None:
    newer = traits.Stamp(T0 + timedelta(days=1), "e2")
    older = traits.Stamp(T0, "e1")
    result = traits.fold([({"plan": "gold"}, newer), ({"plan": "silver"}, older)])
    assert traits.plain(result) == {"plan": "gold"}
