"""The ledger of orders each service keeps from order events, in a table of its own with the
columns (workspace_id, order_id, customer_id, ordered_at, amount, currency, event_id,
refunded_amount, fully_refunded). One rule everywhere: an order counts once, as first
reported; refunds add up; a refund may arrive before its order."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna.orders import OrderFact

LEDGERS = frozenset({"profile_orders", "seg_orders"})


async def record(
    conn: AsyncConnection,
    table: str,
    workspace_id: str,
    facts: Sequence[tuple[OrderFact, str]],
) -> None:
    """Refunds must be deduplicated by event id before they get here."""
    if table not in LEDGERS:
        raise ValueError(f"unknown order ledger {table!r}")
    completed: dict[str, tuple[OrderFact, str]] = {}
    refunds: dict[str, tuple[Decimal, bool, str]] = {}
    for fact, customer in facts:
        if fact.completed:
            held = completed.get(fact.order_id)
            if held is None or (fact.at, fact.event_id) < (held[0].at, held[0].event_id):
                completed[fact.order_id] = (fact, customer)
        else:
            amount, full, _ = refunds.get(fact.order_id, (Decimal(0), False, customer))
            refunds[fact.order_id] = (
                amount + (fact.amount or Decimal(0)),
                full or fact.amount is None,
                customer,
            )
    if completed:
        rows = list(completed.values())
        await conn.execute(
            sa.text(
                f"INSERT INTO {table} AS o (workspace_id, order_id, customer_id, ordered_at,"  # noqa: S608
                " amount, currency, event_id)"
                " SELECT :ws, i, c, t, a, cur, e FROM unnest(CAST(:ids AS text[]),"
                " CAST(:customers AS text[]), CAST(:times AS timestamptz[]),"
                " CAST(:amounts AS numeric[]), CAST(:currencies AS text[]),"
                " CAST(:events AS text[])) x(i, c, t, a, cur, e)"
                " ON CONFLICT (workspace_id, order_id) DO UPDATE SET"
                " ordered_at = excluded.ordered_at, amount = excluded.amount,"
                " currency = excluded.currency, event_id = excluded.event_id,"
                " customer_id = CASE WHEN o.ordered_at IS NULL THEN excluded.customer_id"
                " ELSE o.customer_id END"
                " WHERE o.ordered_at IS NULL"
                " OR (excluded.ordered_at, excluded.event_id) < (o.ordered_at, o.event_id)"
            ),
            {
                "ws": workspace_id,
                "ids": [f.order_id for f, _ in rows],
                "customers": [c for _, c in rows],
                "times": [f.at for f, _ in rows],
                "amounts": [f.amount for f, _ in rows],
                "currencies": [f.currency for f, _ in rows],
                "events": [f.event_id for f, _ in rows],
            },
        )
    if refunds:
        order_ids = list(refunds)
        await conn.execute(
            sa.text(
                f"INSERT INTO {table} AS o (workspace_id, order_id, customer_id,"  # noqa: S608
                " refunded_amount, fully_refunded)"
                " SELECT :ws, i, c, a, f FROM unnest(CAST(:ids AS text[]),"
                " CAST(:customers AS text[]), CAST(:amounts AS numeric[]),"
                " CAST(:fulls AS boolean[])) x(i, c, a, f)"
                " ON CONFLICT (workspace_id, order_id) DO UPDATE SET"
                " refunded_amount = o.refunded_amount + excluded.refunded_amount,"
                " fully_refunded = o.fully_refunded OR excluded.fully_refunded"
            ),
            {
                "ws": workspace_id,
                "ids": order_ids,
                "customers": [refunds[i][2] for i in order_ids],
                "amounts": [refunds[i][0] for i in order_ids],
                "fulls": [refunds[i][1] for i in order_ids],
            },
        )
