"""Resolving a batch of raw events: deduplicate, resolve identities, merge, store, and say what
to publish. Runs in one transaction; the caller publishes after it commits."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna import order_ledger
from kizuna.envelope import Envelope
from kizuna.orders import OrderFact, order_fact
from kizuna_profile.adapters import store
from kizuna_profile.domain import codec, record
from kizuna_profile.domain.identity import (
    Identifier,
    explicit_customer_id,
    identifiers_of,
    lookup_keys,
    names_a_person,
)
from kizuna_profile.domain.resolution import EventRefs, KnownCustomer, NewCustomerId, Plan, plan

MERGED = "customer.merged"
CREATED = "customer.created"
EMPTY_RECORD = record.Record()


@dataclass
class Outcome:
    resolved: list[Envelope] = field(default_factory=list)
    lifecycle: list[Envelope] = field(default_factory=list)
    stored: int = 0
    duplicates: int = 0
    dropped: int = 0


def resolved_form(event: Envelope, customer_id: str) -> Envelope:
    """The raw event, now keyed by and carrying its canonical customer id."""
    return event.model_copy(
        update={
            "customer_key": customer_id,
            "payload": {**event.payload, "customerId": customer_id},
        }
    )


def merged_event(workspace_id: str, absorbed: str, survivor: str, cause: str) -> Envelope:
    return Envelope.new(
        MERGED,
        workspace_id,
        survivor,
        {"absorbed_id": absorbed, "survivor_id": survivor, "cause_event_id": cause},
        event_id=f"merged:{absorbed}",
    )


def created_event(
    workspace_id: str, customer_id: str, cause: Envelope, identifiers: Sequence[Identifier]
) -> Envelope:
    """A new customer record, made by the event ``cause``. Carries no personal data."""
    return Envelope.new(
        CREATED,
        workspace_id,
        customer_id,
        {
            "customer_id": customer_id,
            "first_seen_at": cause.occurred_at.isoformat(),
            "cause_event_id": cause.id,
            "known": names_a_person(identifiers),
        },
        occurred_at=cause.occurred_at,
        event_id=f"created:{customer_id}",
    )


def new_customer_id(workspace_id: str) -> NewCustomerId:
    def make(identifiers: list[Identifier], cause: str) -> str:
        first = identifiers[0] if identifiers else Identifier("anonymous_id", "")
        seed = f"{workspace_id}\0{first.kind}\0{first.value}\0{cause}".encode()
        return "c_" + hashlib.sha256(seed).hexdigest()[:24]

    return make


def created_again(
    workspace_id: str, events: list[Envelope], stored: dict[str, str]
) -> list[Envelope]:
    """``customer.created`` again for each stored event that created the customer it belongs to
    now (a redelivery after a crash may have lost the first). A customer's id is named after the
    event that created it, so this needs no query; a customer merged away is not announced."""
    name = new_customer_id(workspace_id)
    again = []
    for event in events:
        customer = stored.get(event.id)
        if customer is not None:
            identifiers = identifiers_of(event)
            if name(identifiers, event.id) == customer:
                again.append(created_event(workspace_id, customer, event, identifiers))
    return again


async def process(conn: AsyncConnection, events: Sequence[Envelope]) -> Outcome:
    outcome = Outcome()
    by_workspace: dict[str, dict[str, Envelope]] = {}
    for event in events:
        by_workspace.setdefault(event.workspace_id, {}).setdefault(event.id, event)
    outcome.duplicates = len(events) - sum(len(batch) for batch in by_workspace.values())
    for workspace_id, unique in sorted(by_workspace.items()):
        await _process_workspace(conn, workspace_id, list(unique.values()), outcome)
    return outcome


async def _process_workspace(
    conn: AsyncConnection, workspace_id: str, events: list[Envelope], outcome: Outcome
) -> None:
    look = await store.first_look(conn, workspace_id, [e.id for e in events])
    stored = look.stored
    if stored:
        outcome.duplicates += len(stored)
        outcome.resolved.extend(resolved_form(e, stored[e.id]) for e in events if e.id in stored)
        outcome.lifecycle.extend(created_again(workspace_id, events, stored))
        for absorbed, survivor, cause in await store.merges_caused_by(
            conn, workspace_id, list(stored)
        ):
            outcome.lifecycle.append(merged_event(workspace_id, absorbed, survivor, cause))
    fresh = [e for e in events if e.id not in stored]
    refs = [EventRefs(e.id, tuple(identifiers_of(e)), explicit_customer_id(e)) for e in fresh]
    if look.any_erasures:
        fresh, refs = await _without_erased(conn, workspace_id, fresh, refs, outcome)
    if not fresh:
        return

    identifiers = {i for ref in refs for i in ref.identifiers}
    aliases = {i for i in identifiers if i.kind == "previous_id"}
    named = {ref.customer_id for ref in refs if ref.customer_id is not None}
    # An alias locks the ids its previousId may name, so locking our own identifiers is
    # enough to serialise with any alias that could link them.
    locked = identifiers | {k for i in aliases for k in lookup_keys(i)}
    await store.lock(
        conn,
        [store.lock_key(workspace_id, k.kind, k.value) for k in locked]
        + [store.lock_key(workspace_id, "customer", c) for c in named],
    )
    twins = {k for i in identifiers for k in lookup_keys(i)} - locked
    found = await store.owners(conn, workspace_id, locked | twins if aliases else locked)
    owner_of = found.of
    if twins and not aliases and found.any_aliases:
        owner_of |= (await store.owners(conn, workspace_id, twins)).of
    current = await store.current_ids(conn, workspace_id, named)
    kept = [
        i for i, ref in enumerate(refs) if ref.customer_id is None or ref.customer_id in current
    ]
    outcome.dropped += len(refs) - len(kept)  # they name a customer that no longer exists
    fresh = [fresh[i] for i in kept]
    refs = [
        EventRefs(r.event_id, r.identifiers, current.get(r.customer_id) if r.customer_id else None)
        for r in (refs[i] for i in kept)
    ]
    if not fresh:
        return
    rows = await store.lock_customers(
        conn,
        workspace_id,
        {*owner_of.values(), *(r.customer_id for r in refs if r.customer_id is not None)},
    )
    known = {
        row.id: KnownCustomer(row.id, row.user_id is not None, row.first_seen_at)
        for row in rows.values()
    }
    result = plan(refs, owner_of, known, new_customer_id(workspace_id))

    assigned = list(zip(fresh, result.customer_of_event, strict=True))
    # Before the merges: they delete the absorbed customers, whose parts the survivors take.
    customers = await _updated_customers(conn, workspace_id, assigned, refs, rows, result)
    await store.apply_merges(conn, workspace_id, result.merges)
    await store.add_identifiers(conn, workspace_id, result.new_identifiers)
    await store.add_events(conn, workspace_id, assigned)
    await store.save_customers(conn, workspace_id, customers)
    facts: list[tuple[OrderFact, str]] = []
    for event, customer in assigned:
        fact = order_fact(event)
        if fact is not None:
            facts.append((fact, customer))
    await order_ledger.record(conn, "profile_orders", workspace_id, facts)
    await store.refresh_order_facts(
        conn, workspace_id, {c for _, c in facts} | set(result.absorbed_into)
    )
    for customer, first in sorted(result.created_by.items()):
        outcome.lifecycle.append(
            created_event(workspace_id, customer, fresh[first], refs[first].identifiers)
        )
    for absorbed, (survivor, cause) in sorted(result.merges.items()):
        outcome.lifecycle.append(merged_event(workspace_id, absorbed, survivor, cause))
    outcome.stored += len(assigned)
    outcome.resolved.extend(resolved_form(event, customer) for event, customer in assigned)


async def _without_erased(
    conn: AsyncConnection,
    workspace_id: str,
    events: list[Envelope],
    refs: list[EventRefs],
    outcome: Outcome,
) -> tuple[list[Envelope], list[EventRefs]]:
    """Drops events that happened before their person was erased: late arrivals must not
    bring the person back. Only for workspaces where someone was erased."""

    def keys_of(ref: EventRefs) -> list[str]:
        keys = [
            store.erasure_key(workspace_id, k.kind, k.value)
            for i in ref.identifiers
            for k in lookup_keys(i)
        ]
        if ref.customer_id is not None:
            keys.append(store.erasure_key(workspace_id, "customer", ref.customer_id))
        return keys

    erased = await store.erased_at(conn, workspace_id, (k for ref in refs for k in keys_of(ref)))
    if not erased:
        return events, refs
    kept_events, kept_refs = [], []
    for event, ref in zip(events, refs, strict=True):
        if any(k in erased and event.occurred_at <= erased[k] for k in keys_of(ref)):
            outcome.dropped += 1
        else:
            kept_events.append(event)
            kept_refs.append(ref)
    return kept_events, kept_refs


async def _updated_customers(
    conn: AsyncConnection,
    workspace_id: str,
    assigned: list[tuple[Envelope, str]],
    refs: list[EventRefs],
    rows: dict[str, store.CustomerRow],
    result: Plan,
) -> list[store.CustomerWrite]:
    """Each customer's new events are folded on their own and merged into what is stored
    (the same record, since observing and merging commute). The record's parts are read and
    written only for customers whose parts change (most events change only facts), and then
    only the parts that change."""
    deltas: dict[str, record.Record] = {}
    user_ids: dict[str, set[str]] = {}
    for (event, customer), ref in zip(assigned, refs, strict=True):
        deltas[customer] = record.observe(deltas.get(customer, EMPTY_RECORD), event)
        for identifier in ref.identifiers:
            if identifier.kind == "user_id":
                user_ids.setdefault(customer, set()).add(identifier.value)
    members = {
        customer: [
            part for part in (customer, *result.absorbed_into.get(customer, ())) if part in rows
        ]
        for customer in deltas
    }
    held = {customer: record.parts_held(delta) for customer, delta in deltas.items()}
    changing = {customer for customer in deltas if held[customer] or len(members[customer]) > 1}
    stored_parts = await store.parts(
        conn, workspace_id, (part for customer in changing for part in members[customer])
    )
    writes = []
    for customer, delta in sorted(deltas.items()):
        is_new = customer not in rows
        merging = len(members[customer]) > 1
        # Without a merge, only the parts the new events touch are decoded and written again;
        # the stored JSON's other parts are kept as they are. A merge combines every part.
        touched = record.PARTS if is_new or merging else held[customer]
        stored = []
        for part in members[customer]:
            row = rows[part]
            stored.append(
                codec.from_json(
                    stored_parts.get(part, {}),
                    parts=touched,
                    first_seen_at=row.first_seen_at,
                    last_seen_at=row.last_seen_at,
                    events_count=row.events_count,
                    last_email_opened_at=row.last_email_opened_at,
                    last_email_clicked_at=row.last_email_clicked_at,
                )
            )
            if row.user_id is not None:
                user_ids.setdefault(customer, set()).add(row.user_id)
        value = functools.reduce(record.merge, stored, delta)
        assert value.first_seen_at is not None
        assert value.last_seen_at is not None
        json_parts = None
        if is_new or merging:
            json_parts = codec.to_json(value)
        elif touched:
            json_parts = codec.with_parts(stored_parts.get(customer, {}), value, touched)
        writes.append(
            store.CustomerWrite(
                id=customer,
                is_new=is_new,
                user_id=min(user_ids[customer]) if customer in user_ids else None,
                first_seen_at=value.first_seen_at,
                last_seen_at=value.last_seen_at,
                events_count=value.events_count,
                traits=record.plain_traits(value) if "traits" in touched else None,
                record=json_parts,
                last_email_opened_at=value.last_email_opened_at,
                last_email_clicked_at=value.last_email_clicked_at,
            )
        )
    return writes
