"""Customer traits as a last-writer-wins map keyed by event time.

Each trait remembers the event time (and event id, to break ties) it was last set at; an
update wins only if it is newer. So applying the same updates in any order, any number of
times, and merging two customers' traits, all give the same result. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple


class Stamp(NamedTuple):
    """Tuples, here and in the record, because a record is rebuilt for every event and a
    tuple is made several times faster than a frozen dataclass."""

    at: datetime
    event_id: str

    def newer_than(self, other: Stamp) -> bool:
        return (self.at, self.event_id) > (other.at, other.event_id)


class TraitValue(NamedTuple):
    value: Any
    stamp: Stamp


Traits = Mapping[str, TraitValue]


def apply(traits: Traits, updates: Mapping[str, Any], stamp: Stamp) -> dict[str, TraitValue]:
    result = dict(traits)
    for name, value in updates.items():
        current = result.get(name)
        if current is None or stamp.newer_than(current.stamp):
            result[name] = TraitValue(value, stamp)
    return result


def merge(left: Traits, right: Traits) -> dict[str, TraitValue]:
    result = dict(left)
    for name, candidate in right.items():
        current = result.get(name)
        if current is None or candidate.stamp.newer_than(current.stamp):
            result[name] = candidate
    return result


def fold(updates: Iterable[tuple[Mapping[str, Any], Stamp]]) -> dict[str, TraitValue]:
    traits: dict[str, TraitValue] = {}
    for values, stamp in updates:
        traits = apply(traits, values, stamp)
    return traits


def plain(traits: Traits) -> dict[str, Any]:
    return {name: trait.value for name, trait in traits.items()}
