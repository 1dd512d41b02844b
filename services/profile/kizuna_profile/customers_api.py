"""The customer API: read, search, timeline, back-office changes, erasure and export."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import uuid4

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from kizuna import auth, topics
from kizuna.bus import OutgoingMessage
from kizuna.envelope import Envelope, utcnow
from kizuna.service import ServiceContext, get_context, require_admin
from kizuna_profile import consumers, erasure
from kizuna_profile.adapters import reads, store
from kizuna_profile.domain import view
from kizuna_profile.domain.identity import normalize_email, normalize_phone

router = APIRouter(prefix="/v1/customers", tags=["customers"])
Admin = Annotated[auth.Principal, Depends(require_admin)]
Context = Annotated[ServiceContext, Depends(get_context)]
Limit = Annotated[int, Query(ge=1, le=500)]
Channel = Literal["email", "line", "sms", "webhook"]
ERASURE_ATTEMPTS = 3
IDENTIFIER_FILTERS: dict[str, tuple[str, Callable[[Any], str | None]]] = {
    "email": ("email", normalize_email),
    "phone": ("phone", normalize_phone),
    "user_id": ("user_id", str),
    "anonymous_id": ("anonymous_id", str),
    "line_user_id": ("line_user_id", str),
}


def _not_found(reference: str) -> HTTPException:
    return HTTPException(404, f"no customer {reference!r} in this workspace")


async def _require(context: ServiceContext, workspace_id: str, reference: str) -> str:
    async with context.engine.connect() as conn:
        found = await reads.find_customer(conn, workspace_id, reference)
    if found is None:
        raise _not_found(reference)
    return found


def _encode_cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode("\x1f".join(parts).encode()).decode()


def _decode_cursor(cursor: str, parts: int) -> list[str]:
    try:
        raw = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True)
        decoded = raw.decode().split("\x1f")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = []
    if len(decoded) != parts or not all(decoded):
        raise HTTPException(422, "cursor: not a cursor this API returned")
    return decoded


@router.get("/{reference}", summary="A customer, by Kizuna id or userId")
async def get_customer(reference: str, principal: Admin, context: Context) -> dict[str, Any]:
    customer_id = await _require(context, principal.workspace_id, reference)
    async with context.engine.connect() as conn:
        found = await reads.customer_view(conn, principal.workspace_id, customer_id)
    if found is None:
        raise _not_found(reference)
    return found


@router.get("", summary="Search customers; every filter given must match")
async def search_customers(
    request: Request,
    principal: Admin,
    context: Context,
    email: str | None = None,
    phone: str | None = None,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    line_user_id: str | None = None,
    segment: Annotated[str | None, Query(description="A segment or RFM tier id.")] = None,
    cursor: str | None = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Traits are filtered with ``trait.<name>=<value>`` (repeatable; all must match)."""
    given = {
        "email": email,
        "phone": phone,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "line_user_id": line_user_id,
    }
    identifiers: list[tuple[str, str]] = []
    for name, raw in given.items():
        if raw is None:
            continue
        kind, normalize = IDENTIFIER_FILTERS[name]
        value = normalize(raw)
        if value is None:
            raise HTTPException(422, f"{name}: not a valid {name.replace('_', ' ')}")
        identifiers.append((kind, value))
    traits = [
        (key.removeprefix("trait."), value)
        for key, value in request.query_params.multi_items()
        if key.startswith("trait.") and len(key) > len("trait.")
    ]
    after = None if cursor is None else _decode_cursor(cursor, 1)[0]
    async with context.engine.connect() as conn:
        ids = await reads.search(
            conn,
            principal.workspace_id,
            identifiers=identifiers,
            traits=traits,
            segment=segment,
            after=after,
            limit=limit + 1,
        )
        page = [await reads.customer_view(conn, principal.workspace_id, i) for i in ids[:limit]]
    return {
        "customers": [c for c in page if c is not None],
        "next_cursor": _encode_cursor(ids[limit - 1]) if len(ids) > limit else None,
    }


@router.get("/{reference}/events", summary="The customer's timeline, newest first")
async def customer_events(
    reference: str,
    principal: Admin,
    context: Context,
    type_: Annotated[list[str], Query(alias="type", description="track, identify, page…")] = [],  # noqa: B006
    name: Annotated[list[str], Query(description="Event name, e.g. Order Completed.")] = [],  # noqa: B006
    cursor: str | None = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    customer_id = await _require(context, principal.workspace_id, reference)
    before = None
    if cursor is not None:
        at, event_id = _decode_cursor(cursor, 2)
        try:
            before = (datetime.fromisoformat(at), event_id)
        except ValueError as error:
            raise HTTPException(422, "cursor: not a cursor this API returned") from error
    async with context.engine.connect() as conn:
        events = await reads.timeline(
            conn,
            principal.workspace_id,
            customer_id,
            types=type_,
            names=name,
            before=before,
            limit=limit + 1,
        )
    page = events[:limit]
    next_cursor = None
    if len(events) > limit:
        next_cursor = _encode_cursor(page[-1]["occurred_at"], page[-1]["id"])
    return {"customer_id": customer_id, "events": page, "next_cursor": next_cursor}


class CustomerChange(BaseModel):
    """Set from the back office; recorded as events, so the history stays complete."""

    traits: dict[str, Any] = Field(default_factory=dict)
    consent: dict[Channel, Literal["granted", "revoked"]] = Field(default_factory=dict)
    source: str = Field(default="back-office", min_length=1, max_length=100)

    @field_validator("traits")
    @classmethod
    def well_known_traits_are_valid(cls, traits: dict[str, Any]) -> dict[str, Any]:
        checks = {
            "email": (normalize_email, "must be an email address"),
            "phone": (normalize_phone, "must be a phone number (digits, optional +)"),
            "birthday": (view.parse_birthday, "must be a date (YYYY-MM-DD)"),
            "timezone": (view.valid_timezone, "must be an IANA time zone, e.g. Asia/Tokyo"),
        }
        for name, (check, problem) in checks.items():
            if traits.get(name) is not None and check(traits[name]) is None:
                raise ValueError(f"{name} {problem}")
        return traits


def _change_events(
    workspace_id: str, customer_id: str, change: CustomerChange, principal: auth.Principal
) -> list[Envelope]:
    context = {"source": change.source, "kizuna": {"key_id": principal.key_id}}
    events = []
    if change.traits:
        events.append(
            Envelope.new(
                "identify",
                workspace_id,
                customer_id,
                {
                    "type": "identify",
                    "customerId": customer_id,
                    "traits": change.traits,
                    "context": context,
                },
                event_id=f"bo-{uuid4().hex}",
            )
        )
    for channel, status in sorted(change.consent.items()):
        properties = {"channel": channel, "status": status, "source": change.source}
        events.append(
            Envelope.new(
                "track",
                workspace_id,
                customer_id,
                {
                    "type": "track",
                    "customerId": customer_id,
                    "event": "Consent Updated",
                    "properties": properties,
                    "context": context,
                },
                event_id=f"bo-{uuid4().hex}",
            )
        )
    return events


@router.patch("/{reference}", summary="Set traits or consent from the back office")
async def change_customer(
    reference: str, change: CustomerChange, principal: Admin, context: Context
) -> dict[str, Any]:
    if not change.traits and not change.consent:
        raise HTTPException(422, "body: give traits or consent to change")
    customer_id = await _require(context, principal.workspace_id, reference)
    events = _change_events(principal.workspace_id, customer_id, change, principal)
    await consumers.resolve_and_publish(context.engine, context.bus, events)
    return await get_customer(customer_id, principal, context)


@router.delete("/{reference}", status_code=202, summary="Erase the customer (GDPR / APPI)")
async def erase_customer(reference: str, principal: Admin, context: Context) -> JSONResponse:
    """Deletes the profile, its identifiers, events and personal data, and publishes
    ``customer.erased`` so every other service deletes theirs. Repeating it is harmless."""
    workspace_id = principal.workspace_id
    announcement: Envelope | None = None
    for _attempt in range(ERASURE_ATTEMPTS):
        async with context.engine.begin() as conn:
            customer_id = await reads.find_customer(conn, workspace_id, reference)
            if customer_id is None:
                announcement = await erasure.erased_before(conn, workspace_id, reference)
                if announcement is None:
                    raise _not_found(reference)
                break
            try:
                announcement = await erasure.erase(conn, workspace_id, customer_id, utcnow())
            except store.ConcurrentChange:
                continue  # merged while we looked: erase the survivor on the next attempt
            break
    if announcement is None:
        raise HTTPException(409, "the customer keeps changing; try again")
    await context.bus.publish_batch(
        topics.CUSTOMER_LIFECYCLE,
        [OutgoingMessage(announcement.bus_key, announcement.to_bytes())],
    )
    return JSONResponse(
        {
            "id": announcement.customer_key,
            "status": "erased",
            "erased_at": announcement.payload["erased_at"],
        },
        status_code=202,
    )


@router.get("/{reference}/export", summary="Everything held about the customer, as JSON")
async def export_customer(reference: str, principal: Admin, context: Context) -> dict[str, Any]:
    customer_id = await _require(context, principal.workspace_id, reference)
    async with context.engine.connect() as conn:
        exported = await erasure.export(conn, principal.workspace_id, customer_id)
    if exported["customer"] is None:
        raise _not_found(reference)
    return {"exported_at": utcnow().isoformat(), **exported}
