"""Bulk import (CSV or JSON Lines) of customers and historical orders, row by row, with a report
of the rows refused. The work runs in the background; GET shows its progress."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated, Any, Literal
from uuid import uuid4

import orjson
import sqlalchemy as sa
import structlog
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna import auth
from kizuna.bus import Bus
from kizuna.envelope import Envelope, utcnow
from kizuna.service import ServiceContext, get_context, require_admin
from kizuna_profile import consumers
from kizuna_profile.domain import imports

router = APIRouter(prefix="/v1/imports", tags=["imports"])
Admin = Annotated[auth.Principal, Depends(require_admin)]
Context = Annotated[ServiceContext, Depends(get_context)]
BATCH_ROWS = 1000
REJECTED_KEPT = 1000
STALLED_AFTER = timedelta(minutes=5)
FORMATS: dict[str, imports.Format] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/jsonlines": "jsonl",
    "application/x-jsonlines": "jsonl",
}
log = structlog.get_logger(__name__)
_running: set[asyncio.Task[None]] = set()


def _format(request: Request, given: str | None) -> imports.Format:
    if given is not None:
        if given not in ("csv", "jsonl"):
            raise HTTPException(422, "format: must be csv or jsonl")
        return "csv" if given == "csv" else "jsonl"
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    found = FORMATS.get(content_type)
    if found is None:
        raise HTTPException(
            422, "format: send Content-Type text/csv or application/x-ndjson, or ?format="
        )
    return found


async def _body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the file is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _progress(engine: AsyncEngine, import_id: str, **values: Any) -> None:
    assignments = ", ".join(f"{name} = :{name}" for name in values)
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                f"UPDATE profile_imports SET {assignments}, updated_at = now()"  # noqa: S608
                " WHERE id = :id"
            ),
            {"id": import_id, **values},
        )


async def run_import(
    engine: AsyncEngine,
    bus: Bus,
    import_id: str,
    workspace_id: str,
    kind: imports.Kind,
    parsed: list[tuple[int, dict[str, Any] | imports.RowProblem]],
) -> None:
    """Stores the rows a batch at a time through the consumer's own path."""
    imported, rejected = 0, 0
    kept: list[dict[str, Any]] = []
    try:
        await _progress(engine, import_id, status="running", rows_total=len(parsed))
        for start in range(0, len(parsed), BATCH_ROWS):
            now = utcnow()
            events: list[Envelope] = []
            for number, row in parsed[start : start + BATCH_ROWS]:
                result = (
                    row
                    if isinstance(row, imports.RowProblem)
                    else imports.to_events(kind, number, row, workspace_id, now)
                )
                if isinstance(result, imports.RowProblem):
                    rejected += 1
                    if len(kept) < REJECTED_KEPT:
                        kept.append(result.as_dict())
                else:
                    imported += 1
                    events.extend(result)
            if events:
                await consumers.resolve_and_publish(engine, bus, events)
            await _progress(
                engine,
                import_id,
                rows_imported=imported,
                rows_rejected=rejected,
                rejected=orjson.dumps(kept).decode(),
            )
        await _progress(engine, import_id, status="completed", finished_at=utcnow())
    except Exception as error:
        log.exception("import_failed", import_id=import_id)
        await _progress(
            engine, import_id, status="failed", finished_at=utcnow(), error=str(error)[:500]
        )


@router.post("", status_code=202, summary="Import customers or orders (CSV or JSON Lines)")
async def start_import(
    request: Request,
    principal: Admin,
    context: Context,
    kind: Literal["customers", "orders"],
    format: str | None = None,
) -> JSONResponse:
    file_format = _format(request, format)
    limit: int = getattr(context.settings, "profile_import_max_bytes", 200 * 1024 * 1024)
    body = await _body(request, limit)
    try:
        parsed = list(imports.rows(body, file_format))
    except imports.UnreadableFile as error:
        raise HTTPException(422, f"(file): {error}") from error
    if not parsed:
        raise HTTPException(422, "(file): holds no rows")
    import_id = f"imp_{uuid4().hex}"
    async with context.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO profile_imports (id, workspace_id, kind, format, status, rows_total)"
                " VALUES (:id, :ws, :kind, :format, 'queued', :total)"
            ),
            {
                "id": import_id,
                "ws": principal.workspace_id,
                "kind": kind,
                "format": file_format,
                "total": len(parsed),
            },
        )
    task = asyncio.create_task(
        run_import(context.engine, context.bus, import_id, principal.workspace_id, kind, parsed)
    )
    _running.add(task)
    task.add_done_callback(_running.discard)
    return JSONResponse(
        {"id": import_id, "status": "queued", "rows_total": len(parsed),
         "status_url": f"/v1/imports/{import_id}"},
        status_code=202,
    )  # fmt: skip


@router.get("/{import_id}", summary="An import's progress and the rows it refused")
async def get_import(import_id: str, principal: Admin, context: Context) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    sa.text("SELECT * FROM profile_imports WHERE id = :id AND workspace_id = :ws"),
                    {"id": import_id, "ws": principal.workspace_id},
                )
            )
            .mappings()
            .one_or_none()
        )
    if row is None:
        raise HTTPException(404, f"no import {import_id!r} in this workspace")
    status = row["status"]
    if status in ("queued", "running") and utcnow() - row["updated_at"] > STALLED_AFTER:
        status = "interrupted"  # the process running it stopped: post the file again
    return {
        "id": row["id"],
        "kind": row["kind"],
        "format": row["format"],
        "status": status,
        "created_at": row["created_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
        "rows_total": row["rows_total"],
        "rows_imported": row["rows_imported"],
        "rows_rejected": row["rows_rejected"],
        "rejected": row["rejected"],
        "error": row["error"],
    }
