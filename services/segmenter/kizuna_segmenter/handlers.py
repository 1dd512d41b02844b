"""RFM use cases: record orders and rescore at once, merges and erasures, the time sweep and the
boundary recompute. Each runs inside the caller's transaction; tier changes go to the outbox
in that same transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna import order_ledger, topics
from kizuna.envelope import Envelope
from kizuna.orders import order_fact
from kizuna_segmenter import engagement, rules
from kizuna_segmenter.adapters import customers, store
from kizuna_segmenter.domain import rfm

BOUNDS_MAX_AGE = timedelta(hours=1)
BUYER_BASE_CHANGE = 0.05  # recompute boundaries when the buyer base moved by 5 %


@dataclass(frozen=True)
class Change:
    customer_id: str
    before: str | None
    after: str | None


def _announcements(
    workspace_id: str,
    customer_id: str,
    seq: int,
    before: rfm.TierRule | None,
    after: rfm.TierRule | None,
    scores: rfm.Scores | None,
    now: datetime,
) -> list[Envelope]:
    events = []
    common = {"kind": "rfm", "scores": scores.as_dict() if scores else None}
    if before is not None:
        events.append(
            Envelope.new(
                "segment.exited",
                workspace_id,
                customer_id,
                {
                    "segment_id": before.id,
                    "segment_name": before.name,
                    "tier": before.id,
                    "next": after.id if after else None,
                    **common,
                },
                occurred_at=now,
                event_id=f"rfm:{customer_id}:{seq}:exited",
            )
        )
    if after is not None:
        events.append(
            Envelope.new(
                "segment.entered",
                workspace_id,
                customer_id,
                {
                    "segment_id": after.id,
                    "segment_name": after.name,
                    "tier": after.id,
                    "previous": before.id if before else None,
                    **common,
                },
                occurred_at=now,
                event_id=f"rfm:{customer_id}:{seq}:entered",
            )
        )
    return events


def _review_at(
    facts: store.OrderFacts | None, bounds: rfm.Bounds, window_days: int, now: datetime
) -> datetime | None:
    if facts is None or facts.last_order_at is None:
        return None
    candidates = [rfm.next_recency_change(facts.last_order_at, bounds, now)]
    if facts.oldest_in_window is not None:  # F and M drop when an order leaves the window
        candidates.append(facts.oldest_in_window + timedelta(days=window_days, microseconds=1))
    due = [c for c in candidates if c is not None]
    return min(due) if due else None


async def rescore(
    conn: AsyncConnection, workspace_id: str, customer_ids: Iterable[str], now: datetime
) -> list[Change]:
    """Recomputes the customers' facts from their orders, scores them against the current
    boundaries, and records every tier change."""
    ids = sorted(set(customer_ids))
    if not ids:
        return []
    states = await store.lock_customers(conn, workspace_id, ids)
    settings = await store.settings_of(conn, workspace_id)
    facts = await store.order_facts(conn, workspace_id, ids, now, settings.window_days)
    return await _score(conn, workspace_id, states, facts, settings, now, only_changed=False)


async def rescore_stored(
    conn: AsyncConnection, workspace_id: str, states: dict[str, store.CustomerState], now: datetime
) -> list[Change]:
    """After the boundaries moved: rescores the customers from the facts they were last scored
    with (time-driven fact changes are the sweep's business) and writes only what changed."""
    settings = await store.settings_of(conn, workspace_id)
    facts = {c: s.stored for c, s in states.items() if s.stored is not None}
    return await _score(conn, workspace_id, states, facts, settings, now, only_changed=True)


async def _score(
    conn: AsyncConnection,
    workspace_id: str,
    states: dict[str, store.CustomerState],
    facts: dict[str, store.OrderFacts],
    settings: store.Settings,
    now: datetime,
    *,
    only_changed: bool,
) -> list[Change]:
    rules = settings.tiers or rfm.DEFAULT_TIERS
    by_id = {rule.id: rule for rule in rules}
    bounds, _ = await store.bounds_of(conn, workspace_id)
    scored: list[store.ScoredCustomer] = []
    history: list[tuple[str, int, str | None, str | None]] = []
    announcements: list[Envelope] = []
    changes: list[Change] = []
    for customer_id in sorted(states):
        state = states[customer_id]
        fact = facts.get(customer_id)
        scores = rfm.score(
            rfm.Facts(
                fact.last_order_at if fact else None,
                fact.frequency if fact else 0,
                float(fact.monetary) if fact else 0.0,
            ),
            bounds,
            now,
        )
        as_tuple = None if scores is None else (scores.recency, scores.frequency, scores.monetary)
        tier = rfm.tier_of(scores, rules)
        after = tier.id if tier else None
        changed = after != state.tier
        review_at = _review_at(fact, bounds, settings.window_days, now)
        if only_changed and state.review_at is not None:
            review_at = min(filter(None, (review_at, state.review_at)))
        if only_changed and not changed and as_tuple == state.scores:
            continue
        seq = state.changes + 1 if changed else state.changes
        if changed:
            before_rule = by_id.get(state.tier or "") or (
                rfm.TierRule(state.tier, state.tier, (1, 5), (1, 5)) if state.tier else None
            )
            history.append((customer_id, seq, state.tier, after))
            announcements += _announcements(
                workspace_id, customer_id, seq, before_rule, tier, scores, now
            )
            changes.append(Change(customer_id, state.tier, after))
        scored.append(
            store.ScoredCustomer(customer_id, fact, as_tuple, after, changed, seq, review_at)
        )
    # Without row locks (only_changed), a row rescored meanwhile by a purchase is left alone.
    written = await store.save_scores(
        conn, workspace_id, scored, now, expected=states if only_changed else None
    )
    history = [h for h in history if h[0] in written]
    announcements = [a for a in announcements if a.customer_key in written]
    await store.record_changes(
        conn, workspace_id, history, announcements, now, topics.SEGMENT_CHANGES
    )
    return [c for c in changes if c.customer_id in written]


async def on_events(conn: AsyncConnection, events: Sequence[Envelope], now: datetime) -> int:
    """Orders and refunds from resolved events; the buyers are rescored at once."""
    by_workspace: dict[str, list[Envelope]] = {}
    for event in {(e.workspace_id, e.id): e for e in events}.values():
        by_workspace.setdefault(event.workspace_id, []).append(event)
    changed = 0
    for workspace_id, batch in sorted(by_workspace.items()):
        touched = sorted({e.customer_key for e in batch})
        await customers.ensure_customers(conn, workspace_id, touched)
        new_ids = await customers.log_events(conn, workspace_id, batch)
        changed += await engagement.score_events(conn, workspace_id, batch, new_ids)
        await customers.record_traits(conn, workspace_id, batch)
        await customers.record_consent(conn, workspace_id, batch)
        facts = [(f, e.customer_key) for e in batch if (f := order_fact(e)) is not None]
        if facts:
            refunds = [f.event_id for f, _ in facts if not f.completed]
            new_refunds = await store.first_seen(conn, workspace_id, refunds)
            kept = [(f, c) for f, c in facts if f.completed or f.event_id in new_refunds]
            await order_ledger.record(conn, "seg_orders", workspace_id, kept)
            changed += len(await rescore(conn, workspace_id, {c for _, c in facts}, now))
        changed += await rules.reevaluate(conn, workspace_id, now, touched)
    return changed


async def on_lifecycle(conn: AsyncConnection, events: Sequence[Envelope], now: datetime) -> int:
    """``customer.merged``: the survivor takes the orders and is rescored; the absorbed id
    leaves its tier. ``customer.erased``: everything under the ids is deleted."""
    changed = 0
    for event in events:
        ws, payload = event.workspace_id, event.payload
        if event.type == "customer.merged":
            absorbed, survivor = str(payload["absorbed_id"]), str(payload["survivor_id"])
            await conn.execute(
                sa.text(
                    "UPDATE seg_orders SET customer_id = :s WHERE workspace_id = :ws"
                    " AND customer_id = :a"
                ),
                {"ws": ws, "a": absorbed, "s": survivor},
            )
            await customers.move(conn, ws, absorbed, survivor)
            changed += len(await rescore(conn, ws, [absorbed, survivor], now))
            await conn.execute(
                sa.text("DELETE FROM seg_customers WHERE workspace_id = :ws AND customer_id = :a"),
                {"ws": ws, "a": absorbed},
            )
            changed += await rules.reevaluate(conn, ws, now, [absorbed, survivor])
        elif event.type == "customer.erased":
            ids = [str(payload["customer_id"]), *map(str, payload.get("absorbed_ids") or [])]
            await customers.forget(conn, ws, ids)
            for table in ("seg_orders", "seg_customers", "seg_tier_history"):
                await conn.execute(
                    sa.text(
                        f"DELETE FROM {table} WHERE workspace_id = :ws"  # noqa: S608
                        " AND customer_id = ANY(CAST(:ids AS text[]))"
                    ),
                    {"ws": ws, "ids": ids},
                )
    return changed


async def sweep_due(conn: AsyncConnection, now: datetime, limit: int) -> tuple[int, int]:
    """Rescores up to ``limit`` customers whose recency crossed a boundary or whose oldest
    order left the window since they were last scored. Returns (reviewed, changed)."""
    due = await store.due_for_review(conn, now, limit)
    changed = 0
    for workspace_id, customer_ids in sorted(due.items()):
        changed += len(await rescore(conn, workspace_id, customer_ids, now))
        changed += await rules.reevaluate(conn, workspace_id, now, customer_ids)  # RFM leaves
    return sum(len(ids) for ids in due.values()), changed


async def bounds_are_stale(conn: AsyncConnection, workspace_id: str, now: datetime) -> bool:
    bounds, computed_at = await store.bounds_of(conn, workspace_id)
    if computed_at is None or now - computed_at > BOUNDS_MAX_AGE:
        return True
    buyers = await store.buyers_count(conn, workspace_id)
    if (buyers >= rfm.MIN_BUYERS) != (bounds.buyers >= rfm.MIN_BUYERS):
        return True
    return abs(buyers - bounds.buyers) > BUYER_BASE_CHANGE * max(bounds.buyers, 1)


async def buyer_ids_after(
    conn: AsyncConnection, workspace_id: str, after: str, limit: int
) -> list[str]:
    rows = await conn.execute(
        sa.text(
            "SELECT customer_id FROM seg_customers WHERE workspace_id = :ws"
            " AND last_order_at IS NOT NULL AND customer_id > :after"
            " ORDER BY customer_id LIMIT :limit"
        ),
        {"ws": workspace_id, "after": after, "limit": limit},
    )
    return [row.customer_id for row in rows]
