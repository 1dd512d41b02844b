"""What the API shows of a customer record: typed well-known traits, consent, facts. Pure."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kizuna_profile.domain import cart
from kizuna_profile.domain.identity import normalize_email, normalize_phone
from kizuna_profile.domain.record import Record, suppressed_channels

# Well-known trait → the trait names clients use for it (Segment's camelCase first).
WELL_KNOWN: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "phone": ("phone",),
    "first_name": ("firstName", "first_name"),
    "last_name": ("lastName", "last_name"),
    "name": ("name",),
    "birthday": ("birthday",),
    "timezone": ("timezone",),
    "locale": ("locale",),
    "line_user_id": ("lineUserId", "line_user_id"),
}


def parse_birthday(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def valid_timezone(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def well_known(traits: dict[str, Any]) -> dict[str, Any]:
    """Typed view of the traits every template and segment relies on; malformed values are
    left out here (they stay in the free-form traits)."""
    found: dict[str, Any] = {}
    for name, aliases in WELL_KNOWN.items():
        value = next((traits[a] for a in aliases if traits.get(a) not in (None, "")), None)
        found[name] = value
    birthday = parse_birthday(found["birthday"])
    return {
        "email": normalize_email(found["email"]),
        "phone": normalize_phone(found["phone"]),
        "first_name": _text(found["first_name"]),
        "last_name": _text(found["last_name"]),
        "name": _text(found["name"]),
        "birthday": None if birthday is None else birthday.isoformat(),
        "timezone": valid_timezone(found["timezone"]),
        "locale": _text(found["locale"]),
        "line_user_id": _text(found["line_user_id"]),
    }


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def consent(record: Record) -> dict[str, Any]:
    return {
        channel: {
            "status": statement.status,
            "source": statement.source,
            "at": statement.stamp.at.isoformat(),
            "event_id": statement.stamp.event_id,
        }
        for channel, statement in sorted(record.consent.items())
    }


def behaviour(record: Record) -> dict[str, Any]:
    current = cart.current(record.cart)
    return {
        "last_email_opened_at": _time(record.last_email_opened_at),
        "last_email_clicked_at": _time(record.last_email_clicked_at),
        "cart": {
            "items": current.items,
            "value": current.value,
            "updated_at": _time(current.updated_at),
        },
        "last_viewed_products": [
            {"product_id": v.product_id, "viewed_at": v.stamp.at.isoformat(), **v.details}
            for v in record.last_viewed
        ],
    }


def suppression(record: Record) -> dict[str, list[str]]:
    return suppressed_channels(record)
