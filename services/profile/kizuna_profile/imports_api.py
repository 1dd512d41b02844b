"""Bulk import (CSV or JSON Lines) of customers and historical orders, row by row, with a report
of the rows refused. The rows are stored in the background, a batch at a time, through the
raw-events consumer's own path; GET shows the progress."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import uuid4

import orjson
import sqlalchemy as sa
import structlog
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from kizuna import auth
from kizuna.bus import Bus
from kizuna.envelope import Envelope, utcnow
from kizuna.service import ServiceContext, get_context, require_admin
from kizuna_profile import consumers
from kizuna_profile.domain import imports
from kizuna_profile.settings import ProfileSettings

BATCH_ROWS = 1000
LANES = 3  # batches stored at once: PostgreSQL works on one while Python prepares the other
ATTEMPTS = 5  # per batch: a race with a consumer (ConcurrentChange, deadlock) is retried
PENDING_MAX = 4  # imports held in memory by one process, running or queued
REJECTED_KEPT = 1000
HEARTBEAT = timedelta(seconds=30)
STALLED_AFTER = timedelta(minutes=5)
STOP_WAIT_SECONDS = 10.0
INTERRUPTED = (
    "interrupted: the service stopped before the import finished; post the same file again"
    " (the rows already imported are skipped)"
)
CONTENT_TYPES: dict[str, imports.Format] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/jsonlines": "jsonl",
    "application/x-jsonlines": "jsonl",
}
log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    """The imports one process holds: run one at a time, cancelled when the app stops."""

    gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=STOP_WAIT_SECONDS)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Nested in the service's lifespan: stops the imports before the engine is disposed."""
    runtime = app.state.imports = Runtime()
    try:
        yield
    finally:
        await runtime.stop()


router = APIRouter(prefix="/v1/imports", tags=["imports"], lifespan=lifespan)
Admin = Annotated[auth.Principal, Depends(require_admin)]
Context = Annotated[ServiceContext, Depends(get_context)]


def _invalid(where: str, name: str, problem: str) -> RequestValidationError:
    return RequestValidationError([{"loc": (where, name), "msg": problem, "type": "value_error"}])


def _format(request: Request, given: imports.Format | None) -> imports.Format:
    if given is not None:
        return given
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    found = CONTENT_TYPES.get(content_type)
    if found is None:
        raise _invalid(
            "header",
            "content-type",
            "send text/csv or application/x-ndjson (JSON Lines), or say ?format=csv|jsonl",
        )
    return found


def _max_bytes(context: ServiceContext) -> int:
    settings = context.settings
    if isinstance(settings, ProfileSettings):
        return settings.profile_import_max_bytes
    default: int = ProfileSettings.model_fields["profile_import_max_bytes"].default
    return default


async def _body(request: Request, limit: int) -> bytearray:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the file is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"the file is larger than {limit} bytes")
    return body


async def _progress(engine: AsyncEngine, import_id: str, **values: Any) -> None:
    assignments = "".join(f"{name} = :{name}, " for name in values)
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                f"UPDATE profile_imports SET {assignments}updated_at = now()"  # noqa: S608
                " WHERE id = :id"
            ),
            {"id": import_id, **values},
        )


@dataclass
class Tally:
    imported: int = 0
    rejected: int = 0
    kept: list[dict[str, Any]] = field(default_factory=list)
    kept_written: int = 0

    def reject(self, problem: imports.RowProblem) -> None:
        self.rejected += 1
        if len(self.kept) < REJECTED_KEPT:
            self.kept.append(problem.as_dict())

    def values(self) -> dict[str, Any]:
        values: dict[str, Any] = {"rows_imported": self.imported, "rows_rejected": self.rejected}
        if len(self.kept) != self.kept_written:
            values["rejected"] = orjson.dumps(self.kept).decode()
            self.kept_written = len(self.kept)
        return values


def _batches(rows: Iterator[imports.ParsedRow]) -> Iterator[list[imports.ParsedRow]]:
    batch: list[imports.ParsedRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


async def _store(engine: AsyncEngine, bus: Bus, events: list[Envelope]) -> None:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            await consumers.resolve_and_publish(engine, bus, events)
            return
        except Exception:
            if attempt == ATTEMPTS:
                raise
            log.warning("import_batch_retried", attempt=attempt, exc_info=True)
            await asyncio.sleep(0.1 * 2**attempt)


async def _import_rows(
    engine: AsyncEngine,
    bus: Bus,
    import_id: str,
    workspace_id: str,
    kind: imports.Kind,
    file: imports.ImportFile,
    received: datetime,
    tally: Tally,
) -> None:
    """Converts batches here while up to LANES earlier batches are being stored."""
    queue: asyncio.Queue[tuple[list[Envelope], int] | None] = asyncio.Queue(maxsize=LANES)
    writing = asyncio.Lock()

    async def lane() -> None:
        while (item := await queue.get()) is not None:
            events, good = item
            if events:
                await _store(engine, bus, events)
            tally.imported += good
            async with writing:
                await _progress(engine, import_id, **tally.values())

    async with asyncio.TaskGroup() as group:
        for _ in range(LANES):
            group.create_task(lane())
        for batch in _batches(file.rows()):
            events: list[Envelope] = []
            good = 0
            for number, row in batch:
                result = (
                    row
                    if isinstance(row, imports.RowProblem)
                    else imports.to_events(kind, number, row, workspace_id, received)
                )
                if isinstance(result, imports.RowProblem):
                    tally.reject(result)
                else:
                    good += 1
                    events.extend(result)
            await queue.put((events, good))
        for _ in range(LANES):
            await queue.put(None)


async def _heartbeat(engine: AsyncEngine, import_id: str) -> None:
    """Tells GET the import is alive while it waits its turn or stores a long batch."""
    while True:
        await asyncio.sleep(HEARTBEAT.total_seconds())
        with contextlib.suppress(Exception):
            await _progress(engine, import_id)


async def _fail(engine: AsyncEngine, import_id: str, tally: Tally, error: str) -> None:
    try:
        await _progress(
            engine, import_id, status="failed", finished_at=utcnow(), error=error[:500],
            **tally.values(),
        )  # fmt: skip
    except Exception:
        log.exception("import_not_marked_failed", import_id=import_id)


async def run_import(
    engine: AsyncEngine,
    bus: Bus,
    gate: asyncio.Semaphore,
    import_id: str,
    workspace_id: str,
    kind: imports.Kind,
    file: imports.ImportFile,
    received: datetime,
) -> None:
    """queued → running → completed | failed, with the counts updated after every batch."""
    tally = Tally()
    heartbeat = asyncio.create_task(_heartbeat(engine, import_id))
    try:
        async with gate:
            total = await asyncio.to_thread(file.count)
            await _progress(engine, import_id, status="running", rows_total=total)
            await _import_rows(engine, bus, import_id, workspace_id, kind, file, received, tally)
            await _progress(
                engine, import_id, status="completed", finished_at=utcnow(), **tally.values()
            )
        log.info("import_completed", import_id=import_id, imported=tally.imported,
                 rejected=tally.rejected)  # fmt: skip
    except asyncio.CancelledError:
        await _fail(engine, import_id, tally, INTERRUPTED)
        raise
    except Exception as error:
        cause = error.exceptions[0] if isinstance(error, ExceptionGroup) else error
        log.error("import_failed", import_id=import_id, exc_info=cause)
        await _fail(engine, import_id, tally, f"{type(cause).__name__}: {cause}")
    finally:
        heartbeat.cancel()


@router.post(
    "",
    status_code=202,
    summary="Import customers or orders (CSV or JSON Lines) sent as the request body",
)
async def start_import(
    request: Request,
    principal: Admin,
    context: Context,
    kind: Annotated[imports.Kind, Query(description="What each row describes.")],
    format: Annotated[
        imports.Format | None, Query(description="Else taken from the Content-Type.")
    ] = None,
) -> JSONResponse:
    file_format = _format(request, format)
    runtime: Runtime = request.app.state.imports
    if len(runtime.tasks) >= PENDING_MAX:
        raise HTTPException(
            429, "too many imports are in progress; wait for one to finish", {"Retry-After": "30"}
        )
    body = await _body(request, _max_bytes(context))
    try:
        file = imports.read_file(body, file_format)
    except imports.UnreadableFile as error:
        raise _invalid("body", "(file)", str(error)) from error
    del body
    import_id = f"imp_{uuid4().hex}"
    received = utcnow()
    async with context.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO profile_imports (id, workspace_id, kind, format, status, created_at)"
                " VALUES (:id, :ws, :kind, :format, 'queued', :at)"
            ),
            {
                "id": import_id,
                "ws": principal.workspace_id,
                "kind": kind,
                "format": file_format,
                "at": received,
            },
        )
    runtime.start(
        run_import(context.engine, context.bus, runtime.gate, import_id,
                   principal.workspace_id, kind, file, received)
    )  # fmt: skip
    status_url = f"/v1/imports/{import_id}"
    return JSONResponse(
        {"id": import_id, "status": "queued", "status_url": status_url},
        status_code=202,
        headers={"Location": status_url},
    )


@router.get("/{import_id}", summary="An import's progress and the rows it refused")
async def get_import(import_id: str, principal: Admin, context: Context) -> dict[str, Any]:
    async with context.engine.connect() as conn:
        found = await conn.execute(
            sa.text("SELECT * FROM profile_imports WHERE id = :id AND workspace_id = :ws"),
            {"id": import_id, "ws": principal.workspace_id},
        )
        row = found.mappings().one_or_none()
    if row is None:
        raise HTTPException(404, f"no import {import_id!r} in this workspace")
    status, error = row["status"], row["error"]
    if status in ("queued", "running") and utcnow() - row["updated_at"] > STALLED_AFTER:
        status, error = "failed", INTERRUPTED  # the process running it stopped without a word
    return {
        "id": row["id"],
        "kind": row["kind"],
        "format": row["format"],
        "status": status,
        "created_at": row["created_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
        "rows_total": row["rows_total"] if status != "queued" else None,
        "rows_imported": row["rows_imported"],
        "rows_rejected": row["rows_rejected"],
        "rejected": row["rejected"],
        "error": error,
    }
