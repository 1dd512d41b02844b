"""The segmenter's tables: orders, customers' RFM state, boundaries, settings, history, outbox."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna.envelope import Envelope
from kizuna_segmenter.domain.rfm import (
    DEFAULT_FREQUENCY,
    DEFAULT_RECENCY_DAYS,
    QUINTILES,
    Bounds,
    TierRule,
)

DEFAULT_WINDOW_DAYS = 365


async def first_seen(
    conn: AsyncConnection, workspace_id: str, event_ids: Sequence[str]
) -> set[str]:
    """Records the events and returns those never seen before."""
    if not event_ids:
        return set()
    rows = await conn.execute(
        sa.text(
            "INSERT INTO seg_seen_events (workspace_id, event_id)"
            " SELECT :ws, unnest(CAST(:ids AS text[])) ON CONFLICT DO NOTHING RETURNING event_id"
        ),
        {"ws": workspace_id, "ids": list(event_ids)},
    )
    return {row.event_id for row in rows}


@dataclass(frozen=True)
class Settings:
    window_days: int
    tiers: tuple[TierRule, ...] | None  # None: the default map


def tiers_from_json(data: Any) -> tuple[TierRule, ...]:
    return tuple(
        TierRule(t["id"], t["name"], tuple(t["recency"]), tuple(t["frequency"])) for t in data
    )


def tiers_to_json(tiers: Iterable[TierRule]) -> list[dict[str, Any]]:
    return [
        {"id": t.id, "name": t.name, "recency": list(t.recency), "frequency": list(t.frequency)}
        for t in tiers
    ]


async def settings_of(conn: AsyncConnection, workspace_id: str) -> Settings:
    row = (
        await conn.execute(
            sa.text("SELECT window_days, tiers FROM seg_settings WHERE workspace_id = :ws"),
            {"ws": workspace_id},
        )
    ).one_or_none()
    if row is None:
        return Settings(DEFAULT_WINDOW_DAYS, None)
    return Settings(row.window_days, tiers_from_json(row.tiers) if row.tiers else None)


async def save_settings(
    conn: AsyncConnection, workspace_id: str, window_days: int, tiers: Sequence[TierRule] | None
) -> None:
    await conn.execute(
        sa.text(
            "INSERT INTO seg_settings (workspace_id, window_days, tiers, updated_at)"
            " VALUES (:ws, :window, CAST(:tiers AS jsonb), now())"
            " ON CONFLICT (workspace_id) DO UPDATE SET window_days = excluded.window_days,"
            " tiers = excluded.tiers, updated_at = now()"
        ),
        {
            "ws": workspace_id,
            "window": window_days,
            "tiers": orjson.dumps(tiers_to_json(tiers) if tiers else []).decode(),
        },
    )


async def bounds_of(conn: AsyncConnection, workspace_id: str) -> tuple[Bounds, datetime | None]:
    row = (
        await conn.execute(
            sa.text("SELECT * FROM seg_bounds WHERE workspace_id = :ws"), {"ws": workspace_id}
        )
    ).one_or_none()
    if row is None:
        return Bounds(), None

    def cuts(values: list[float] | None) -> tuple[float, ...] | None:
        return None if values is None else tuple(values)

    return (
        Bounds(cuts(row.recency_days), cuts(row.frequency), cuts(row.monetary), row.buyers),
        row.computed_at,
    )


async def buyers_count(conn: AsyncConnection, workspace_id: str) -> int:
    return int(
        await conn.scalar(
            sa.text(
                "SELECT count(*) FROM seg_customers WHERE workspace_id = :ws"
                " AND last_order_at IS NOT NULL"
            ),
            {"ws": workspace_id},
        )
        or 0
    )


async def recompute_bounds(conn: AsyncConnection, workspace_id: str, now: datetime) -> Bounds:
    """Quintile cut points of the workspace's buyers, in SQL."""
    row = (
        await conn.execute(
            sa.text(
                "SELECT count(*) AS buyers,"
                " percentile_cont(CAST(:q AS float8[])) WITHIN GROUP"
                "  (ORDER BY extract(epoch FROM (:now - last_order_at)) / 86400) AS r,"
                " percentile_cont(CAST(:q AS float8[])) WITHIN GROUP (ORDER BY frequency) AS f,"
                " percentile_cont(CAST(:q AS float8[])) WITHIN GROUP (ORDER BY monetary) AS m"
                " FROM seg_customers WHERE workspace_id = :ws AND last_order_at IS NOT NULL"
            ),
            {"ws": workspace_id, "now": now, "q": list(QUINTILES)},
        )
    ).one()
    await conn.execute(
        sa.text(
            "INSERT INTO seg_bounds (workspace_id, recency_days, frequency, monetary, buyers,"
            " computed_at) VALUES (:ws, :r, :f, :m, :buyers, :now)"
            " ON CONFLICT (workspace_id) DO UPDATE SET recency_days = excluded.recency_days,"
            " frequency = excluded.frequency, monetary = excluded.monetary,"
            " buyers = excluded.buyers, computed_at = excluded.computed_at"
        ),
        {"ws": workspace_id, "r": row.r, "f": row.f, "m": row.m, "buyers": row.buyers, "now": now},
    )
    return Bounds(
        None if row.r is None else tuple(row.r),
        None if row.f is None else tuple(row.f),
        None if row.m is None else tuple(row.m),
        row.buyers,
    )


@dataclass(frozen=True)
class CustomerState:
    customer_id: str
    tier: str | None
    changes: int
    scores: tuple[int, int, int] | None = None
    review_at: datetime | None = None
    stored: OrderFacts | None = None  # the facts as last scored
    scored_at: datetime | None = None


def _state(row: Any) -> CustomerState:
    """From a row of ``_STATES`` (unpacked by position: attribute access costs more)."""
    customer_id, tier, changes, recency, frequency_score, monetary_score, review_at = row[:7]
    first_order_at, last_order_at, frequency, monetary, orders, revenue, scored_at = row[7:]
    scores = None if recency is None else (recency, frequency_score, monetary_score)
    stored = None
    if last_order_at is not None:
        stored = OrderFacts(
            first_order_at, last_order_at, frequency, monetary, orders, revenue, None
        )
    return CustomerState(customer_id, tier, changes, scores, review_at, stored, scored_at)


_STATES = (
    "SELECT customer_id, tier, changes, recency_score, frequency_score,"
    " monetary_score, review_at, first_order_at, last_order_at, frequency, monetary,"
    " lifetime_orders, lifetime_revenue, scored_at FROM seg_customers"
    " WHERE workspace_id = :ws AND customer_id = ANY(CAST(:ids AS text[]))"
    " ORDER BY customer_id"
)
_STATES_LOCKED = _STATES + " FOR UPDATE"
_MOVED_AFTER = (
    "WITH page AS ("
    " SELECT customer_id, tier, changes, recency_score, frequency_score,"
    " monetary_score, review_at, first_order_at, last_order_at, frequency, monetary,"
    " lifetime_orders, lifetime_revenue, scored_at,"
    " greatest(extract(epoch FROM (:now - last_order_at))::float8 / 86400, 0) AS days"
    " FROM seg_customers WHERE workspace_id = :ws AND last_order_at IS NOT NULL"
    " AND customer_id > :after ORDER BY customer_id LIMIT :limit),"
    " scored AS (SELECT page.*,"
    " 5 - ((days > :r1)::int + (days > :r2)::int + (days > :r3)::int + (days > :r4)::int) AS r,"
    " 1 + ((frequency > :f1)::int + (frequency > :f2)::int + (frequency > :f3)::int"
    "  + (frequency > :f4)::int) AS f,"
    " CASE WHEN :fixed THEN 3 ELSE 1 + ((monetary > :m1)::int + (monetary > :m2)::int"
    "  + (monetary > :m3)::int + (monetary > :m4)::int) END AS m FROM page)"
    " SELECT l.last, s.customer_id, s.tier, s.changes, s.recency_score, s.frequency_score,"
    " s.monetary_score, s.review_at, s.first_order_at, s.last_order_at, s.frequency,"
    " s.monetary, s.lifetime_orders, s.lifetime_revenue, s.scored_at"
    " FROM (SELECT max(customer_id) AS last FROM page) l LEFT JOIN scored s"
    " ON s.r IS DISTINCT FROM s.recency_score OR s.f IS DISTINCT FROM s.frequency_score"
    " OR s.m IS DISTINCT FROM s.monetary_score"
)


async def moved_buyers_after(
    conn: AsyncConnection,
    workspace_id: str,
    after: str,
    limit: int,
    bounds: Bounds,
    now: datetime,
) -> tuple[str | None, dict[str, CustomerState]]:
    """Of the next ``limit`` buyers in id order, those whose scores the boundaries move (the
    database does the arithmetic of ``rfm.score`` to find them; Python then rescores just those).
    Returns the last id looked at, and their states, unlocked."""
    fixed = bounds.fixed
    recency = DEFAULT_RECENCY_DAYS if fixed else bounds.recency_days or ()
    frequency = DEFAULT_FREQUENCY if fixed else bounds.frequency or ()
    monetary = (0.0,) * 4 if fixed else bounds.monetary or ()
    params: dict[str, Any] = {
        "ws": workspace_id, "after": after, "limit": limit, "now": now, "fixed": fixed
    }  # fmt: skip
    for prefix, cuts in (("r", recency), ("f", frequency), ("m", monetary)):
        for index, cut in enumerate(cuts, start=1):
            params[f"{prefix}{index}"] = float(cut)
    rows = (await conn.execute(sa.text(_MOVED_AFTER), params)).all()
    last = rows[0].last if rows else None
    return last, {row.customer_id: _state(row[1:]) for row in rows if row.customer_id}


async def lock_customers(
    conn: AsyncConnection, workspace_id: str, customer_ids: Iterable[str]
) -> dict[str, CustomerState]:
    ids = sorted(set(customer_ids))
    await conn.execute(
        sa.text(
            "INSERT INTO seg_customers (workspace_id, customer_id)"
            " SELECT :ws, unnest(CAST(:ids AS text[])) ON CONFLICT DO NOTHING"
        ),
        {"ws": workspace_id, "ids": ids},
    )
    return await locked_states(conn, workspace_id, ids)


async def locked_states(
    conn: AsyncConnection, workspace_id: str, ids: Sequence[str], *, lock: bool = True
) -> dict[str, CustomerState]:
    """Without ``lock``, whoever writes back must check nothing changed meanwhile."""
    rows = await conn.execute(
        sa.text(_STATES_LOCKED if lock else _STATES), {"ws": workspace_id, "ids": list(ids)}
    )
    return {row.customer_id: _state(row) for row in rows}


@dataclass(frozen=True)
class OrderFacts:
    first_order_at: datetime | None
    last_order_at: datetime | None
    frequency: int
    monetary: Decimal
    lifetime_orders: int
    lifetime_revenue: Decimal
    oldest_in_window: datetime | None


async def order_facts(
    conn: AsyncConnection,
    workspace_id: str,
    customer_ids: Iterable[str],
    now: datetime,
    window_days: int,
) -> dict[str, OrderFacts]:
    """Frequency and monetary count the orders of the last ``window_days`` that were not
    refunded in full; monetary is net of refunds."""
    rows = await conn.execute(
        sa.text(
            "SELECT customer_id, min(ordered_at) AS first_at, max(ordered_at) AS last_at,"
            " count(*) FILTER (WHERE in_window) AS frequency,"
            " coalesce(sum(net) FILTER (WHERE in_window), 0) AS monetary,"
            " count(*) AS lifetime_orders, coalesce(sum(net), 0) AS lifetime_revenue,"
            " min(ordered_at) FILTER (WHERE in_window) AS oldest_in_window"
            " FROM (SELECT customer_id, ordered_at,"
            "  greatest(amount - refunded_amount, 0) AS net,"
            "  ordered_at > :since AND ordered_at <= :now AS in_window"
            "  FROM seg_orders WHERE workspace_id = :ws"
            "  AND customer_id = ANY(CAST(:ids AS text[]))"
            "  AND ordered_at IS NOT NULL AND NOT fully_refunded) o"
            " GROUP BY customer_id"
        ),
        {
            "ws": workspace_id,
            "ids": sorted(set(customer_ids)),
            "now": now,
            "since": now - timedelta(days=window_days),
        },
    )
    return {
        row.customer_id: OrderFacts(
            row.first_at,
            row.last_at,
            row.frequency,
            row.monetary,
            row.lifetime_orders,
            row.lifetime_revenue,
            row.oldest_in_window,
        )
        for row in rows
    }


@dataclass(frozen=True)
class ScoredCustomer:
    customer_id: str
    facts: OrderFacts | None
    scores: tuple[int, int, int] | None
    tier: str | None
    tier_changed: bool
    changes: int
    review_at: datetime | None


async def save_scores(
    conn: AsyncConnection,
    workspace_id: str,
    scored: Sequence[ScoredCustomer],
    now: datetime,
    expected: dict[str, CustomerState] | None = None,
) -> set[str]:
    """Writes the scores; with ``expected``, only where the row is still as it was read.
    Returns the customers written."""
    if not scored:
        return set()

    def column(pick: Any) -> list[Any]:
        return [pick(s) for s in scored]

    result = await conn.execute(
        sa.text(
            "UPDATE seg_customers c SET first_order_at = x.fo, last_order_at = x.lo,"
            " frequency = x.f, monetary = x.m, lifetime_orders = x.lto, lifetime_revenue = x.ltr,"
            " recency_score = x.rs, frequency_score = x.fs, monetary_score = x.ms, tier = x.t,"
            " tier_since = CASE WHEN x.changed THEN :now ELSE c.tier_since END,"
            " changes = x.changes, scored_at = :now, review_at = x.review"
            " FROM unnest(CAST(:ids AS text[]), CAST(:fo AS timestamptz[]),"
            " CAST(:lo AS timestamptz[]), CAST(:f AS integer[]), CAST(:m AS numeric[]),"
            " CAST(:lto AS integer[]), CAST(:ltr AS numeric[]), CAST(:rs AS smallint[]),"
            " CAST(:fs AS smallint[]), CAST(:ms AS smallint[]), CAST(:t AS text[]),"
            " CAST(:changed AS boolean[]), CAST(:changes AS integer[]),"
            " CAST(:review AS timestamptz[]), CAST(:expected_changes AS integer[]),"
            " CAST(:expected_scored_at AS timestamptz[]))"
            " x(id, fo, lo, f, m, lto, ltr, rs, fs, ms, t, changed, changes, review,"
            " expected_changes, expected_scored_at)"
            " WHERE c.workspace_id = :ws AND c.customer_id = x.id AND (NOT :guarded OR"
            " (c.changes = x.expected_changes"
            " AND c.scored_at IS NOT DISTINCT FROM x.expected_scored_at))"
            " RETURNING c.customer_id"
        ),
        {
            "ws": workspace_id,
            "now": now,
            "guarded": expected is not None,
            "expected_changes": column(
                lambda s: expected[s.customer_id].changes if expected else None
            ),
            "expected_scored_at": column(
                lambda s: expected[s.customer_id].scored_at if expected else None
            ),
            "ids": column(lambda s: s.customer_id),
            "fo": column(lambda s: s.facts and s.facts.first_order_at),
            "lo": column(lambda s: s.facts and s.facts.last_order_at),
            "f": column(lambda s: s.facts.frequency if s.facts else 0),
            "m": column(lambda s: s.facts.monetary if s.facts else Decimal(0)),
            "lto": column(lambda s: s.facts.lifetime_orders if s.facts else 0),
            "ltr": column(lambda s: s.facts.lifetime_revenue if s.facts else Decimal(0)),
            "rs": column(lambda s: s.scores and s.scores[0]),
            "fs": column(lambda s: s.scores and s.scores[1]),
            "ms": column(lambda s: s.scores and s.scores[2]),
            "t": column(lambda s: s.tier),
            "changed": column(lambda s: s.tier_changed),
            "changes": column(lambda s: s.changes),
            "review": column(lambda s: s.review_at),
        },
    )
    return {row.customer_id for row in result}


async def record_changes(
    conn: AsyncConnection,
    workspace_id: str,
    history: Sequence[tuple[str, int, str | None, str | None]],
    announcements: Sequence[Envelope],
    now: datetime,
    topic: str,
) -> None:
    """Tier history and the segment-change events, in the transaction that made the change."""
    if history:
        await conn.execute(
            sa.text(
                "INSERT INTO seg_tier_history (workspace_id, customer_id, seq, from_tier,"
                " to_tier, changed_at) SELECT :ws, c, s, f, t, :now FROM unnest("
                " CAST(:customers AS text[]), CAST(:seqs AS integer[]),"
                " CAST(:froms AS text[]), CAST(:tos AS text[])) x(c, s, f, t)"
                " ON CONFLICT DO NOTHING"
            ),
            {
                "ws": workspace_id,
                "now": now,
                "customers": [h[0] for h in history],
                "seqs": [h[1] for h in history],
                "froms": [h[2] for h in history],
                "tos": [h[3] for h in history],
            },
        )
    await add_to_outbox(conn, topic, announcements)


async def add_to_outbox(conn: AsyncConnection, topic: str, events: Sequence[Envelope]) -> None:
    if not events:
        return
    await conn.execute(
        sa.text(
            "INSERT INTO seg_outbox (event_id, topic, key, value)"
            " SELECT i, :topic, k, v FROM unnest(CAST(:ids AS text[]), CAST(:keys AS text[]),"
            " CAST(:values AS bytea[])) x(i, k, v) ON CONFLICT (event_id) DO NOTHING"
        ),
        {
            "topic": topic,
            "ids": [e.id for e in events],
            "keys": [e.bus_key for e in events],
            "values": [e.to_bytes() for e in events],
        },
    )


async def due_for_review(conn: AsyncConnection, now: datetime, limit: int) -> dict[str, list[str]]:
    """Customers whose scores may have moved with time alone, claimed for this transaction."""
    rows = await conn.execute(
        sa.text(
            "SELECT workspace_id, customer_id FROM seg_customers WHERE review_at <= :now"
            " ORDER BY review_at LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        {"now": now, "limit": limit},
    )
    due: dict[str, list[str]] = {}
    for row in rows:
        due.setdefault(row.workspace_id, []).append(row.customer_id)
    return due
