"""The record's parts as JSON, for the ``record`` column and back. Pure: no I/O.

The facts (first and last seen, events count, last email opened and clicked) are columns of
their own and are not repeated here: a batch whose events change only facts leaves the JSON
as it is. Records written before that still carry them; they are ignored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kizuna_profile.domain.cart import CartEntry, CartLog
from kizuna_profile.domain.record import ConsentStatement, Record, Suppression, ViewedProduct
from kizuna_profile.domain.traits import Stamp, TraitValue


def _stamp(stamp: Stamp) -> list[str]:
    return [stamp.at.isoformat(), stamp.event_id]


def _parse_stamp(value: list[str]) -> Stamp:
    return Stamp(datetime.fromisoformat(value[0]), value[1])


def to_json(record: Record) -> dict[str, Any]:
    return {
        "traits": {k: [v.value, *_stamp(v.stamp)] for k, v in record.traits.items()},
        "consent": {
            channel: [s.status, s.source, *_stamp(s.stamp)] for channel, s in record.consent.items()
        },
        "suppressions": {k: _stamp(s.stamp) for k, s in record.suppressions.items()},
        "last_viewed": [[v.product_id, v.details, *_stamp(v.stamp)] for v in record.last_viewed],
        "cart": {
            "cleared": None if record.cart.cleared is None else _stamp(record.cart.cleared),
            "entries": [
                [e.action, list(e.products), *_stamp(e.stamp)] for e in record.cart.entries
            ],
        },
    }


def from_json(
    data: dict[str, Any],
    *,
    first_seen_at: datetime | None = None,
    last_seen_at: datetime | None = None,
    events_count: int = 0,
    last_email_opened_at: datetime | None = None,
    last_email_clicked_at: datetime | None = None,
) -> Record:
    """The parts from ``data``, the facts as given (from their columns)."""
    facts: dict[str, Any] = {
        "first_seen_at": first_seen_at,
        "last_seen_at": last_seen_at,
        "events_count": events_count,
        "last_email_opened_at": last_email_opened_at,
        "last_email_clicked_at": last_email_clicked_at,
    }
    if not data:
        return Record(**facts)
    cart = data.get("cart") or {}
    return Record(
        **facts,
        traits={k: TraitValue(v[0], _parse_stamp(v[1:])) for k, v in data["traits"].items()},
        consent={
            channel: ConsentStatement(v[0], _parse_stamp(v[2:]), v[1])
            for channel, v in data["consent"].items()
        },
        suppressions={k: Suppression(_parse_stamp(v)) for k, v in data["suppressions"].items()},
        last_viewed=tuple(
            ViewedProduct(v[0], _parse_stamp(v[2:]), v[1]) for v in data["last_viewed"]
        ),
        cart=CartLog(
            tuple(
                CartEntry(_parse_stamp(e[2:]), e[0], tuple(e[1])) for e in cart.get("entries", [])
            ),
            None if cart.get("cleared") is None else _parse_stamp(cart["cleared"]),
        ),
    )
