"""Which identifiers an event reveals about the person behind it. Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

from kizuna.envelope import Envelope

IdentifierKind = Literal["user_id", "email", "phone", "line_user_id", "anonymous_id", "previous_id"]
# Stronger first: the identifier a merged customer is best known by.
STRENGTH: tuple[IdentifierKind, ...] = (
    "user_id",
    "email",
    "phone",
    "line_user_id",
    "anonymous_id",
    "previous_id",
)
_RANK = {kind: rank for rank, kind in enumerate(STRENGTH)}
# What makes a person known rather than an anonymous visitor (``customer.created``'s ``known``).
KNOWN_KINDS: frozenset[IdentifierKind] = frozenset({"user_id", "email", "phone"})
# ``alias`` does not say whether its previousId was a userId or an anonymousId, so the three
# kinds of client-chosen ids look each other up (but a userId never matches an anonymousId).
_TWINS: dict[str, tuple[IdentifierKind, ...]] = {
    "user_id": ("previous_id",),
    "anonymous_id": ("previous_id",),
    "previous_id": ("user_id", "anonymous_id"),
}
_PHONE_NOISE = re.compile(r"[\s\-().]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Identifier(NamedTuple):
    """A tuple, so hashing and comparing it is cheap: resolution does it a lot."""

    kind: IdentifierKind
    value: str

    @property
    def strength(self) -> int:
        return _RANK[self.kind]


def normalize_email(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email if _EMAIL.match(email) else None


def normalize_phone(value: Any) -> str | None:
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    phone = _PHONE_NOISE.sub("", str(value))
    digits = phone.removeprefix("+")
    return phone if digits.isdigit() and 6 <= len(digits) <= 15 else None


def _text(value: Any) -> str | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    return str(value) if isinstance(value, str | int) else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def identifiers_of(event: Envelope) -> list[Identifier]:
    """Every identifier the event names, strongest first, without duplicates.
    ``alias`` names both the previous id and the new user id: they are one person."""
    payload = event.payload
    traits = _object(payload.get("traits"))
    context_traits = _object(_object(payload.get("context")).get("traits"))
    found: set[Identifier] = set()
    for kind, value in (
        ("user_id", _text(payload.get("userId"))),
        ("anonymous_id", _text(payload.get("anonymousId"))),
        ("email", normalize_email(traits.get("email") or context_traits.get("email"))),
        ("phone", normalize_phone(traits.get("phone") or context_traits.get("phone"))),
        ("line_user_id", _text(traits.get("lineUserId") or context_traits.get("lineUserId"))),
    ):
        if value is not None:
            found.add(Identifier(kind, value))  # type: ignore[arg-type]
    if event.type == "alias":
        previous = _text(payload.get("previousId"))
        if previous is not None:
            found.add(Identifier("previous_id", previous))
    return sorted(found, key=lambda i: (i.strength, i.value))


def names_a_person(identifiers: Iterable[Identifier]) -> bool:
    """A userId, an email or a phone: more than an anonymous visitor's device ids."""
    return any(identifier.kind in KNOWN_KINDS for identifier in identifiers)


def lookup_keys(identifier: Identifier) -> list[Identifier]:
    """The identifier and the twins under which an alias may have recorded the same id."""
    twins = _TWINS.get(identifier.kind, ())
    return [identifier, *(Identifier(kind, identifier.value) for kind in twins)]


def explicit_customer_id(event: Envelope) -> str | None:
    """Tracked opens and clicks, and back-office changes, name the canonical customer id."""
    return _text(event.payload.get("customerId"))
