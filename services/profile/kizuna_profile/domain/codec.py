"""The record's parts as JSON, for the ``record`` column and back. Pure: no I/O.

The facts (first and last seen, events count, last email opened and clicked) are columns of
their own and are not repeated here: a batch whose events change only facts leaves the JSON
as it is. Records written before that still carry them; they are ignored."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from kizuna_profile.domain.cart import CartEntry, CartLog
from kizuna_profile.domain.record import (
    PARTS,
    ConsentStatement,
    Record,
    Suppression,
    ViewedProduct,
)
from kizuna_profile.domain.traits import Stamp, TraitValue


def _stamp(stamp: Stamp) -> list[str]:
    return [stamp.at.isoformat(), stamp.event_id]


def _parse_stamp(value: list[str]) -> Stamp:
    return Stamp(datetime.fromisoformat(value[0]), value[1])


def to_json(record: Record, parts: Collection[str] = PARTS) -> dict[str, Any]:
    """The record's ``parts`` (all by default) as JSON."""
    data: dict[str, Any] = {}
    if "traits" in parts:
        data["traits"] = {k: [v.value, *_stamp(v.stamp)] for k, v in record.traits.items()}
    if "consent" in parts:
        data["consent"] = {
            channel: [s.status, s.source, *_stamp(s.stamp)] for channel, s in record.consent.items()
        }
    if "suppressions" in parts:
        data["suppressions"] = {k: _stamp(s.stamp) for k, s in record.suppressions.items()}
    if "last_viewed" in parts:
        data["last_viewed"] = [
            [v.product_id, v.details, *_stamp(v.stamp)] for v in record.last_viewed
        ]
    if "cart" in parts:
        data["cart"] = {
            "cleared": None if record.cart.cleared is None else _stamp(record.cart.cleared),
            "entries": [
                [e.action, list(e.products), *_stamp(e.stamp)] for e in record.cart.entries
            ],
        }
    return data


def from_json(
    data: dict[str, Any],
    *,
    parts: Collection[str] = PARTS,
    first_seen_at: datetime | None = None,
    last_seen_at: datetime | None = None,
    events_count: int = 0,
    last_email_opened_at: datetime | None = None,
    last_email_clicked_at: datetime | None = None,
) -> Record:
    """The ``parts`` (all by default) read from ``data``, the others left empty; the facts as
    given (from their columns)."""
    facts: dict[str, Any] = {
        "first_seen_at": first_seen_at,
        "last_seen_at": last_seen_at,
        "events_count": events_count,
        "last_email_opened_at": last_email_opened_at,
        "last_email_clicked_at": last_email_clicked_at,
    }
    if not data:
        return Record(**facts)
    read: dict[str, Any] = {}
    if "traits" in parts:
        read["traits"] = {
            k: TraitValue(v[0], _parse_stamp(v[1:])) for k, v in data.get("traits", {}).items()
        }
    if "consent" in parts:
        read["consent"] = {
            channel: ConsentStatement(v[0], _parse_stamp(v[2:]), v[1])
            for channel, v in data.get("consent", {}).items()
        }
    if "suppressions" in parts:
        read["suppressions"] = {
            k: Suppression(_parse_stamp(v)) for k, v in data.get("suppressions", {}).items()
        }
    if "last_viewed" in parts:
        read["last_viewed"] = tuple(
            ViewedProduct(v[0], _parse_stamp(v[2:]), v[1]) for v in data.get("last_viewed", ())
        )
    if "cart" in parts:
        cart = data.get("cart") or {}
        read["cart"] = CartLog(
            tuple(
                CartEntry(_parse_stamp(e[2:]), e[0], tuple(e[1])) for e in cart.get("entries", [])
            ),
            None if cart.get("cleared") is None else _parse_stamp(cart["cleared"]),
        )
    return Record(**facts, **read)


def with_parts(stored: dict[str, Any], record: Record, parts: Collection[str]) -> dict[str, Any]:
    """``stored`` JSON with ``record``'s ``parts`` written over it; its other parts are kept as
    they are, never decoded (facts left in an older JSON are dropped)."""
    kept = {k: v for k, v in stored.items() if k in PARTS and k not in parts}
    return {**kept, **to_json(record, parts)}
