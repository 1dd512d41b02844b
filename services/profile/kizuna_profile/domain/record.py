"""The customer record, built so that order does not matter.

Every part is a value that observing an event moves forward and that two records combine into
without loss: counts add up (events are deduplicated before they get here), times keep the
newest or the oldest, traits and consent keep the statement with the newest event time, lists
keep the newest entries by event time. So applying the same events in any order, and merging
two records, give the same record. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

from kizuna.envelope import Envelope
from kizuna_profile.domain import cart as cart_log
from kizuna_profile.domain import traits as trait_map
from kizuna_profile.domain.traits import Stamp, TraitValue

CHANNELS = ("email", "line", "sms", "webhook")
ConsentStatus = Literal["granted", "revoked"]
SuppressionReason = Literal["hard_bounce", "complaint"]
LAST_VIEWED_KEPT = 10
HARD_BOUNCES = frozenset({"hard", "permanent"})


class ConsentStatement(NamedTuple):
    status: ConsentStatus
    stamp: Stamp
    source: str

    def order(self) -> tuple[datetime, bool, str]:
        """Newest wins; at the same instant an opt-out beats an opt-in."""
        return (self.stamp.at, self.status == "revoked", self.stamp.event_id)


class Suppression(NamedTuple):
    """Sticky: once a channel bounced hard or complained, no merge or event lifts it."""

    stamp: Stamp  # the first time it happened


class ViewedProduct(NamedTuple):
    product_id: str
    stamp: Stamp
    details: dict[str, Any]


@dataclass(frozen=True)
class Record:
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    events_count: int = 0
    traits: dict[str, TraitValue] = field(default_factory=dict)
    consent: dict[str, ConsentStatement] = field(default_factory=dict)
    suppressions: dict[str, Suppression] = field(default_factory=dict)  # "email:complaint"
    last_email_opened_at: datetime | None = None
    last_email_clicked_at: datetime | None = None
    last_viewed: tuple[ViewedProduct, ...] = ()
    cart: cart_log.CartLog = field(default_factory=cart_log.CartLog)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def _newer_consent(
    current: ConsentStatement | None, candidate: ConsentStatement
) -> ConsentStatement:
    return candidate if current is None or candidate.order() > current.order() else current


def _first_suppression(current: Suppression | None, candidate: Suppression) -> Suppression:
    if current is None:
        return candidate
    older = (candidate.stamp.at, candidate.stamp.event_id) < (
        current.stamp.at,
        current.stamp.event_id,
    )
    return candidate if older else current


def _newest_views(views: Iterable[ViewedProduct]) -> tuple[ViewedProduct, ...]:
    newest: dict[str, ViewedProduct] = {}
    for view in views:
        kept = newest.get(view.product_id)
        if kept is None or view.stamp.newer_than(kept.stamp):
            newest[view.product_id] = view
    ordered = sorted(newest.values(), key=lambda v: (v.stamp.at, v.stamp.event_id), reverse=True)
    return tuple(ordered[:LAST_VIEWED_KEPT])


def _facts(left: Record, right: Record) -> dict[str, Any]:
    return {
        "first_seen_at": _earliest(left.first_seen_at, right.first_seen_at),
        "last_seen_at": _latest(left.last_seen_at, right.last_seen_at),
        "events_count": left.events_count + right.events_count,
        "last_email_opened_at": _latest(left.last_email_opened_at, right.last_email_opened_at),
        "last_email_clicked_at": _latest(left.last_email_clicked_at, right.last_email_clicked_at),
    }


PARTS = ("traits", "consent", "suppressions", "last_viewed", "cart")


def parts_held(record: Record) -> frozenset[str]:
    """The names (``PARTS``) of the parts that are not empty: traits, consent, suppressions,
    viewed products, a cart. Each part merges on its own, so merging ``record`` into another
    changes only these parts of it (and its facts)."""
    held = {
        "traits": bool(record.traits),
        "consent": bool(record.consent),
        "suppressions": bool(record.suppressions),
        "last_viewed": bool(record.last_viewed),
        "cart": bool(record.cart.entries) or record.cart.cleared is not None,
    }
    return frozenset(name for name, present in held.items() if present)


def has_parts(record: Record) -> bool:
    """Whether the record holds more than its facts (times and counts)."""
    return bool(parts_held(record))


def merge(left: Record, right: Record) -> Record:
    if not has_parts(right):
        return _evolve(left, _facts(left, right))
    if not has_parts(left):
        return _evolve(right, _facts(left, right))
    consent = dict(left.consent)
    for channel, statement in right.consent.items():
        consent[channel] = _newer_consent(consent.get(channel), statement)
    suppressions = dict(left.suppressions)
    for key, suppression in right.suppressions.items():
        suppressions[key] = _first_suppression(suppressions.get(key), suppression)
    return Record(
        traits=trait_map.merge(left.traits, right.traits),
        consent=consent,
        suppressions=suppressions,
        last_viewed=_newest_views((*left.last_viewed, *right.last_viewed)),
        cart=cart_log.merge(left.cart, right.cart),
        **_facts(left, right),
    )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _channel(value: Any, default: str) -> str | None:
    channel = str(value).lower() if isinstance(value, str) else default
    return channel if channel in CHANNELS else None


def product_id_of(product: dict[str, Any]) -> str | None:
    for key in ("product_id", "sku", "id"):
        value = product.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            return str(value)
    return None


def _consent_statements(name: str, properties: dict[str, Any], stamp: Stamp) -> dict[str, Any]:
    """``Consent Updated`` {channel, status: granted|revoked, source}; ``Unsubscribed``."""
    if name == "Unsubscribed":
        channel = _channel(properties.get("channel"), "email")
        if channel is None:
            return {}
        source = str(properties.get("source") or "unsubscribe")
        return {channel: ConsentStatement("revoked", stamp, source)}
    channel = _channel(properties.get("channel"), "")
    status = properties.get("status")
    if isinstance(properties.get("granted"), bool):
        status = "granted" if properties["granted"] else "revoked"
    if channel is None or status not in ("granted", "revoked"):
        return {}
    return {channel: ConsentStatement(status, stamp, str(properties.get("source") or "event"))}


def trait_consent(traits: dict[str, Any]) -> dict[str, bool]:
    """``traits.consent`` of an identify: ``{"email": true, "line": false}`` → channel → granted."""
    given = traits.get("consent")
    if not isinstance(given, dict):
        return {}
    return {
        channel: flag
        for raw, flag in given.items()
        if isinstance(flag, bool) and (channel := _channel(raw, "")) is not None
    }


def _suppression(name: str, properties: dict[str, Any]) -> str | None:
    if name == "Email Marked as Spam":
        return "email:complaint"
    if name == "Email Bounced" and str(properties.get("bounce_type", "")).lower() in HARD_BOUNCES:
        return "email:hard_bounce"
    return None


def _track_changes(
    record: Record, name: str, properties: dict[str, Any], stamp: Stamp
) -> dict[str, Any]:
    human = properties.get("machine_suspected") is not True
    if name == "Email Opened" and human:
        return {"last_email_opened_at": _latest(record.last_email_opened_at, stamp.at)}
    if name == "Email Link Clicked" and human:
        return {"last_email_clicked_at": _latest(record.last_email_clicked_at, stamp.at)}
    if name == "Product Viewed":
        product_id = product_id_of(properties)
        if product_id is None:
            return {}
        details: dict[str, Any] = {
            k: properties[k]
            for k in ("name", "price", "currency", "category", "url", "image_url")
            if k in properties
        }
        view = ViewedProduct(product_id, stamp, details)
        return {"last_viewed": _newest_views((*record.last_viewed, view))}
    if name in ("Consent Updated", "Unsubscribed"):
        consent = dict(record.consent)
        for channel, statement in _consent_statements(name, properties, stamp).items():
            consent[channel] = _newer_consent(consent.get(channel), statement)
        return {"consent": consent}
    suppression = _suppression(name, properties)
    if suppression is not None:
        suppressions = dict(record.suppressions)
        suppressions[suppression] = _first_suppression(
            suppressions.get(suppression), Suppression(stamp)
        )
        return {"suppressions": suppressions}
    if name in cart_log.CART_EVENT_NAMES:
        return {"cart": cart_log.observe(record.cart, name, properties, stamp)}
    return {}


def _evolve(record: Record, changes: dict[str, Any]) -> Record:
    """``dataclasses.replace`` without re-running ``__init__``: a quarter of the cost, and this
    runs once per event. Safe because a Record is frozen and its fields are never mutated."""
    evolved = object.__new__(Record)
    evolved.__dict__.update(record.__dict__)
    evolved.__dict__.update(changes)
    return evolved


def observe(record: Record, event: Envelope) -> Record:
    """The record once ``event`` (not seen before) is part of it."""
    stamp = Stamp(event.occurred_at, event.id)
    changes: dict[str, Any] = {
        "first_seen_at": _earliest(record.first_seen_at, event.occurred_at),
        "last_seen_at": _latest(record.last_seen_at, event.occurred_at),
        "events_count": record.events_count + 1,
    }
    payload = event.payload
    if event.type == "identify":
        updates = _object(payload.get("traits"))
        if updates:
            changes["traits"] = trait_map.apply(record.traits, updates, stamp)
        stated = trait_consent(updates)
        if stated:
            consent = dict(record.consent)
            for channel, granted in stated.items():
                statement = ConsentStatement("granted" if granted else "revoked", stamp, "traits")
                consent[channel] = _newer_consent(consent.get(channel), statement)
            changes["consent"] = consent
    elif event.type == "track" and isinstance(payload.get("event"), str):
        changes.update(
            _track_changes(record, payload["event"], _object(payload.get("properties")), stamp)
        )
    return _evolve(record, changes)


def plain_traits(record: Record) -> dict[str, Any]:
    return trait_map.plain(record.traits)


def suppressed_channels(record: Record) -> dict[str, list[str]]:
    """Channel → why nothing may be sent on it (suppressions and unsubscribes)."""
    reasons: dict[str, list[str]] = {}
    for key in sorted(record.suppressions):
        channel, _, reason = key.partition(":")
        reasons.setdefault(channel, []).append(reason)
    for channel, statement in sorted(record.consent.items()):
        if statement.status == "revoked" and statement.source == "unsubscribe":
            reasons.setdefault(channel, []).append("unsubscribed")
    return reasons
