"""Identity resolution for one batch of one workspace's new events. Pure: no I/O.

Identifiers and customers are nodes of a graph; an event joins every identifier it names, the
customers those identifiers already belong to, and the customer it names explicitly. Each
connected component is one person: one customer. Components are the same whatever order the
events arrive in, which is what makes merging order-independent."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from kizuna_profile.domain.identity import Identifier, lookup_keys


@dataclass(frozen=True)
class EventRefs:
    event_id: str
    identifiers: tuple[Identifier, ...]
    customer_id: str | None = None  # named explicitly (tracked links, back office), resolved


@dataclass(frozen=True)
class KnownCustomer:
    id: str
    has_user_id: bool
    first_seen_at: datetime

    def survivor_rank(self) -> tuple[bool, datetime, str]:
        """A merge keeps the customer known by a userId, then the oldest, then the smallest id."""
        return (not self.has_user_id, self.first_seen_at, self.id)


@dataclass
class Plan:
    customer_of_event: list[str] = field(default_factory=list)
    new_customers: dict[str, list[Identifier]] = field(default_factory=dict)
    merges: dict[str, tuple[str, str]] = field(default_factory=dict)  # absorbed → (survivor, cause)
    new_identifiers: dict[Identifier, str] = field(default_factory=dict)
    absorbed_into: dict[str, list[str]] = field(default_factory=dict)  # survivor → absorbed
    created_by: dict[str, int] = field(default_factory=dict)  # new customer → its cause's index


class _DisjointSet:
    """Union-find over any hashable nodes, numbered on first sight."""

    def __init__(self) -> None:
        self.number: dict[Hashable, int] = {}
        self.parent: list[int] = []

    def _index(self, node: Hashable) -> int:
        index = self.number.get(node)
        if index is None:
            index = self.number[node] = len(self.parent)
            self.parent.append(index)
        return index

    def find(self, node: Hashable) -> int:
        parent = self.parent
        index = root = self._index(node)
        while parent[root] != root:
            root = parent[root]
        while parent[index] != root:
            parent[index], index = root, parent[index]
        return root

    def union(self, a: Hashable, b: Hashable) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[root_b] = root_a


NewCustomerId = Callable[[list[Identifier], str], str]


def by_strength(identifiers: Iterable[Identifier]) -> list[Identifier]:
    return sorted(identifiers, key=lambda i: (i.strength, i.value))


def plan(
    events: Sequence[EventRefs],
    owner_of: Mapping[Identifier, str],
    customers: Mapping[str, KnownCustomer],
    new_customer_id: NewCustomerId,
) -> Plan:
    """``owner_of`` maps every known identifier (including alias twins) to its customer;
    ``customers`` describes every customer they name. ``new_customer_id`` names a new customer
    after the event that created it (the smallest event id of its component): from that
    event's identifiers and id alone, so that event seen again names the same customer."""
    sets = _DisjointSet()
    in_batch = {identifier for event in events for identifier in event.identifiers}
    for index, event in enumerate(events):
        node = ("event", index)
        sets.find(node)
        for identifier in event.identifiers:
            for key in lookup_keys(identifier):
                if key == identifier or key in in_batch:
                    sets.union(node, ("identifier", key))
                if key in owner_of:
                    sets.union(node, ("customer", owner_of[key]))
        if event.customer_id is not None:
            sets.union(node, ("customer", event.customer_id))

    members: dict[int, list[int]] = {}
    for index in range(len(events)):
        members.setdefault(sets.find(("event", index)), []).append(index)
    existing: dict[int, set[str]] = {}
    for customer_id in customers:
        existing.setdefault(sets.find(("customer", customer_id)), set()).add(customer_id)

    result = Plan(customer_of_event=[""] * len(events))
    for root, indexes in members.items():
        identifiers = by_strength({i for index in indexes for i in events[index].identifiers})
        first = min(indexes, key=lambda index: events[index].event_id)
        cause = events[first].event_id
        found = sorted(existing.get(root, ()), key=lambda c: customers[c].survivor_rank())
        if found:
            survivor = found[0]
            for absorbed in found[1:]:
                result.merges[absorbed] = (survivor, cause)
            if len(found) > 1:
                result.absorbed_into[survivor] = found[1:]
        else:
            survivor = new_customer_id(by_strength(events[first].identifiers), cause)
            result.new_customers[survivor] = identifiers
            result.created_by[survivor] = first
        for index in indexes:
            result.customer_of_event[index] = survivor
        for identifier in identifiers:
            if identifier not in owner_of:  # known ones follow their customer into the survivor
                result.new_identifiers[identifier] = survivor
    return result
