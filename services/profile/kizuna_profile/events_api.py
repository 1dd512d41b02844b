"""The workspace's stored events over a time range, oldest first (admin key): what a journey
simulation replays, or an export reads. Timelines per customer are in customers_api."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import AwareDatetime

from kizuna import auth
from kizuna.service import ServiceContext, get_context, require_admin

router = APIRouter(prefix="/v1/events", tags=["events"])
Admin = Annotated[auth.Principal, Depends(require_admin)]
Context = Annotated[ServiceContext, Depends(get_context)]


def _cursor(at: datetime, event_id: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}\x1f{event_id}".encode()).decode()


def _after(cursor: str) -> tuple[datetime, str]:
    try:
        at, event_id = (
            base64.b64decode(cursor, altchars=b"-_", validate=True).decode().split("\x1f")
        )
        return datetime.fromisoformat(at), event_id
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise HTTPException(422, "cursor: not a cursor this API returned") from error


@router.get("", summary="Stored events in [since, until), oldest first")
async def list_events(
    admin: Admin,
    context: Context,
    since: AwareDatetime,
    until: AwareDatetime,
    name: Annotated[list[str], Query(description="Event names, e.g. Order Completed.")] = [],  # noqa: B006
    type_: Annotated[list[str], Query(alias="type", description="track, identify…")] = [],  # noqa: B006
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> dict[str, Any]:
    """Each event under the customer id it belongs to now, with its payload as stored."""
    if until <= since:
        raise HTTPException(422, "until: must be after since")
    after = _after(cursor) if cursor else (since, "")
    async with context.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.text(
                    "SELECT e.event_id, e.type, e.name, e.occurred_at, e.payload, e.customer_id"
                    " FROM profile_events e WHERE e.workspace_id = :ws AND e.occurred_at >= :since"
                    " AND e.occurred_at < :until AND (e.occurred_at, e.event_id) > (:at, :id)"
                    " AND (cardinality(CAST(:names AS text[])) = 0"
                    " OR e.name = ANY(CAST(:names AS text[])))"
                    " AND (cardinality(CAST(:types AS text[])) = 0"
                    " OR e.type = ANY(CAST(:types AS text[])))"
                    " ORDER BY e.occurred_at, e.event_id LIMIT :n"
                ),
                {
                    "ws": admin.workspace_id,
                    "since": since,
                    "until": until,
                    "at": after[0],
                    "id": after[1],
                    "names": list(name),
                    "types": list(type_),
                    "n": limit + 1,
                },
            )
        ).all()
    page = rows[:limit]
    return {
        "events": [
            {
                "id": row.event_id,
                "type": row.type,
                "name": row.name,
                "customer_id": row.customer_id,
                "occurred_at": row.occurred_at.isoformat(),
                "payload": row.payload,
            }
            for row in page
        ],
        "next_cursor": _cursor(page[-1].occurred_at, page[-1].event_id)
        if len(rows) > limit
        else None,
    }
