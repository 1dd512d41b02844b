"""Rule segments through the API (port 8003): define, preview, list members, export as CSV."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from kizuna import auth
from kizuna.service import ServiceContext, get_context, require_admin
from kizuna_segmenter import rules
from kizuna_segmenter.domain.conditions import InvalidCondition, compile_conditions
from kizuna_segmenter.runtime import Segmenter

router = APIRouter(prefix="/v1/segments", tags=["segments"])
Admin = Annotated[auth.Principal, Depends(require_admin)]
Context = Annotated[ServiceContext, Depends(get_context)]
SAMPLE = 20


class SegmentBody(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    conditions: dict[str, Any] = Field(description="See docs/segmenter.md: all/any/not, leaves.")


class NewSegment(SegmentBody):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$", description="Stable id, e.g. vip_tea")


class Preview(BaseModel):
    conditions: dict[str, Any]


def _segmenter(request: Request) -> Segmenter:
    segmenter: Segmenter = request.app.state.segmenter
    return segmenter


def _time_based(conditions: dict[str, Any]) -> bool:
    try:
        return compile_conditions(conditions).time_based
    except InvalidCondition as error:
        raise HTTPException(422, f"{error.path}: {error.problem}") from error


async def _view(context: ServiceContext, workspace_id: str, segment_id: str) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    sa.text(
                        "SELECT s.*, (SELECT count(*) FROM seg_memberships m WHERE"
                        " m.workspace_id = s.workspace_id AND m.segment_id = s.id AND m.member)"
                        " AS members FROM seg_segments s WHERE s.workspace_id = :ws AND s.id = :id"
                    ),
                    {"ws": workspace_id, "id": segment_id},
                )
            )
            .mappings()
            .one_or_none()
        )
    if row is None:
        raise HTTPException(404, f"no segment {segment_id!r} in this workspace")
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "conditions": row["conditions"],
        "time_based": row["time_based"],
        "members": row["members"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "version": row["version"],
    }


async def _save(
    request: Request, context: ServiceContext, workspace_id: str, segment_id: str,
    body: SegmentBody, *, create: bool,
) -> None:  # fmt: skip
    time_based = _time_based(body.conditions)
    segmenter = _segmenter(request)
    now = segmenter.clock()
    async with context.engine.begin() as conn:
        params = {
            "ws": workspace_id,
            "id": segment_id,
            "name": body.name,
            "description": body.description,
            "conditions": orjson.dumps(body.conditions).decode(),
            "time_based": time_based,
        }
        if create:
            result = await conn.execute(
                sa.text(
                    "INSERT INTO seg_segments (workspace_id, id, name, description, conditions,"
                    " time_based) VALUES (:ws, :id, :name, :description,"
                    " CAST(:conditions AS jsonb), :time_based) ON CONFLICT DO NOTHING"
                ),
                params,
            )
            if result.rowcount == 0:
                raise HTTPException(409, f"id: a segment {segment_id!r} exists already")
        else:
            result = await conn.execute(
                sa.text(
                    "UPDATE seg_segments SET name = :name, description = :description,"
                    " conditions = CAST(:conditions AS jsonb), time_based = :time_based,"
                    " updated_at = now(), version = version + 1"
                    " WHERE workspace_id = :ws AND id = :id"
                ),
                params,
            )
            if result.rowcount == 0:
                raise HTTPException(404, f"no segment {segment_id!r} in this workspace")
        segment = rules.Segment(segment_id, body.name, body.conditions, time_based)
        members = await rules.matching(conn, workspace_id, body.conditions, now)
        await rules.apply(conn, workspace_id, segment, members, now, initial=create)
    segmenter.outbox_pending.set()


@router.post("", status_code=201, summary="Create a segment; its first members are announced")
async def create_segment(
    body: NewSegment, request: Request, principal: Admin, context: Context
) -> dict[str, Any]:
    """Initial members are announced as ``segment.entered`` with ``"initial": true``, so a
    journey can choose to start only for later entries."""
    await _save(request, context, principal.workspace_id, body.id, body, create=True)
    return await _view(context, principal.workspace_id, body.id)


@router.put("/{segment_id}", summary="Change a segment; members are re-evaluated")
async def update_segment(
    segment_id: str, body: SegmentBody, request: Request, principal: Admin, context: Context
) -> dict[str, Any]:
    await _save(request, context, principal.workspace_id, segment_id, body, create=False)
    return await _view(context, principal.workspace_id, segment_id)


@router.get("", summary="Every segment of the workspace")
async def list_segments(principal: Admin, context: Context) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        ids = [
            row.id
            for row in await conn.execute(
                sa.text("SELECT id FROM seg_segments WHERE workspace_id = :ws ORDER BY id"),
                {"ws": principal.workspace_id},
            )
        ]
    return {"segments": [await _view(context, principal.workspace_id, i) for i in ids]}


@router.get("/{segment_id}")
async def get_segment(segment_id: str, principal: Admin, context: Context) -> dict[str, Any]:
    return await _view(context, principal.workspace_id, segment_id)


@router.delete("/{segment_id}", status_code=204, summary="Delete; every member exits")
async def delete_segment(
    segment_id: str, request: Request, principal: Admin, context: Context
) -> Response:
    found = await _view(context, principal.workspace_id, segment_id)
    segmenter = _segmenter(request)
    async with context.engine.begin() as conn:
        segment = rules.Segment(segment_id, found["name"], found["conditions"], False)
        await rules.remove(conn, principal.workspace_id, segment, segmenter.clock())
    segmenter.outbox_pending.set()
    return Response(status_code=204)


@router.post("/preview", summary="How many customers match, and a sample, before saving")
async def preview(
    body: Preview, request: Request, principal: Admin, context: Context
) -> dict[str, Any]:
    _time_based(body.conditions)
    now = _segmenter(request).clock()
    async with context.engine.connect() as conn:
        members = await rules.matching(conn, principal.workspace_id, body.conditions, now)
    return {"count": len(members), "sample": members[:SAMPLE]}


async def _members(
    context: ServiceContext, workspace_id: str, segment_id: str, after: str, limit: int
) -> list[sa.Row[Any]]:
    async with context.engine.connect() as conn:
        return list(
            await conn.execute(
                sa.text(
                    "SELECT customer_id, since FROM seg_memberships WHERE workspace_id = :ws"
                    " AND segment_id = :id AND member AND customer_id > :after"
                    " ORDER BY customer_id LIMIT :limit"
                ),
                {"ws": workspace_id, "id": segment_id, "after": after, "limit": limit},
            )
        )


@router.get("/{segment_id}/members", summary="Members, in pages")
async def members(
    segment_id: str,
    principal: Admin,
    context: Context,
    cursor: str = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    await _view(context, principal.workspace_id, segment_id)
    rows = await _members(context, principal.workspace_id, segment_id, cursor, limit + 1)
    page = rows[:limit]
    return {
        "members": [{"customer_id": r.customer_id, "since": r.since.isoformat()} for r in page],
        "next_cursor": page[-1].customer_id if len(rows) > limit else None,
    }


@router.get("/{segment_id}/members.csv", summary="Every member, as CSV")
async def members_csv(segment_id: str, principal: Admin, context: Context) -> Response:
    await _view(context, principal.workspace_id, segment_id)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["customer_id", "since"])
    after = ""
    while True:
        rows = await _members(context, principal.workspace_id, segment_id, after, 5000)
        writer.writerows([r.customer_id, r.since.isoformat()] for r in rows)
        if len(rows) < 5000:
            break
        after = rows[-1].customer_id
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{segment_id}.csv"'},
    )
