"""SQL of the journey service: journeys and versions, runs, the step log, schedules, the
customer mirror. Every function runs in the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from kizuna.db import fetch_direct
from kizuna_journey.domain.definition import DeliveryRules, JourneyDefinition
from kizuna_journey.domain.mirror import Mirror

_definitions: dict[tuple[str, str, int], JourneyDefinition] = {}  # versions never change


@dataclass(frozen=True)
class ActiveJourney:
    workspace_id: str
    journey_id: str
    version: int
    definition: JourneyDefinition


@dataclass
class RunRow:
    run_id: str
    workspace_id: str
    journey_id: str
    version: int
    customer_id: str
    holdout: bool
    step: str | None
    visits: dict[str, int]
    data: dict[str, Any]
    due_at: datetime | None
    waiting_for: str | None
    entered_at: datetime
    status: str = "active"
    ended_at: datetime | None = None
    end_reason: str | None = None
    converted_at: datetime | None = None


RUN_COLUMNS = (
    "run_id, workspace_id, journey_id, version, customer_id, holdout, step, visits, data,"
    " due_at, waiting_for, entered_at, status, ended_at, end_reason, converted_at"
)


def parse_definition(
    workspace_id: str, journey_id: str, version: int, raw: Any
) -> JourneyDefinition:
    key = (workspace_id, journey_id, version)
    found = _definitions.get(key)
    if found is None:
        found = JourneyDefinition.model_validate(raw)
        _definitions[key] = found
    return found


async def active_journeys_and_rules(
    conn: AsyncConnection, workspace_id: str
) -> tuple[list[ActiveJourney], DeliveryRules | None] | None:
    """The workspace's active journeys (as ``active_journeys``) and its delivery rules, in one
    round trip; None when no journey is active (the rules then need ``delivery_rules``)."""
    rows = await fetch_direct(
        conn,
        "SELECT j.workspace_id, j.id, j.version, v.definition,"
        " (SELECT delivery FROM jr_settings WHERE workspace_id = :ws) AS delivery"
        " FROM jr_journeys j JOIN jr_versions v ON v.workspace_id = j.workspace_id"
        " AND v.journey_id = j.id AND v.version = j.version"
        " WHERE j.status = 'active' AND j.workspace_id = :ws"
        " FOR SHARE OF j SKIP LOCKED",  # a journey changing status right now is left out
        {"ws": workspace_id},
    )
    if not rows:
        return None
    raw = rows[0]["delivery"]
    journeys = [ActiveJourney(r[0], r[1], r[2], parse_definition(*r[:4])) for r in rows]
    return journeys, None if raw is None else DeliveryRules.model_validate(raw)


async def definitions_of(
    conn: AsyncConnection, keys: Iterable[tuple[str, str, int]]
) -> dict[tuple[str, str, int], JourneyDefinition]:
    wanted = set(keys)
    missing = [key for key in wanted if key not in _definitions]
    if missing:
        rows = await conn.execute(
            sa.text(
                "SELECT workspace_id, journey_id, version, definition FROM jr_versions"
                " WHERE (workspace_id, journey_id, version) IN"
                " (SELECT * FROM unnest(CAST(:ws AS text[]), CAST(:j AS text[]),"
                " CAST(:v AS int[])))"
            ),
            {
                "ws": [k[0] for k in missing],
                "j": [k[1] for k in missing],
                "v": [k[2] for k in missing],
            },
        )
        for row in rows.all():
            parse_definition(*row)
    return {key: _definitions[key] for key in wanted if key in _definitions}


async def journey_statuses(
    conn: AsyncConnection, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    pairs = set(pairs)
    if not pairs:
        return {}
    rows = await conn.execute(
        sa.text(
            "SELECT workspace_id, id, status FROM jr_journeys WHERE (workspace_id, id) IN"
            " (SELECT * FROM unnest(CAST(:ws AS text[]), CAST(:j AS text[])))"
        ),
        {"ws": [p[0] for p in pairs], "j": [p[1] for p in pairs]},
    )
    return {(r.workspace_id, r.id): r.status for r in rows.all()}


def _run(row: Any) -> RunRow:
    return RunRow(
        run_id=row["run_id"],
        workspace_id=row["workspace_id"],
        journey_id=row["journey_id"],
        version=row["version"],
        customer_id=row["customer_id"],
        holdout=row["holdout"],
        step=row["step"],
        visits=dict(row["visits"]),
        data=dict(row["data"]),
        due_at=row["due_at"],
        waiting_for=row["waiting_for"],
        entered_at=row["entered_at"],
        status=row["status"],
        ended_at=row["ended_at"],
        end_reason=row["end_reason"],
        converted_at=row["converted_at"],
    )


LOCK_SPACE = 0x4A52  # the journey service's customer locks


async def lock_customers(
    conn: AsyncConnection, workspace_id: str, customers: Iterable[str]
) -> None:
    """Serialises all journey work on these customers (whatever topic or replica it comes
    from), waiting for the locks in one global order so two waiters never deadlock."""
    await conn.execute(
        sa.text(
            "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT"
            " hashtextextended(:ws || ':' || c, :space) AS k"
            " FROM unnest(CAST(:c AS text[])) c ORDER BY k) keys"
        ),
        {"ws": workspace_id, "c": sorted(set(customers)), "space": LOCK_SPACE},
    )


async def try_lock_customers(
    conn: AsyncConnection, workspace_id: str, customers: Iterable[str]
) -> set[str]:
    """The customers whose lock this transaction got without waiting: timers and schedules
    skip the others until next round, so they never wait while holding claimed rows."""
    rows = await conn.execute(
        sa.text(
            "SELECT c FROM unnest(CAST(:c AS text[])) c"
            " WHERE pg_try_advisory_xact_lock(hashtextextended(:ws || ':' || c, :space))"
        ),
        {"ws": workspace_id, "c": sorted(set(customers)), "space": LOCK_SPACE},
    )
    return {row.c for row in rows.all()}


async def lock_live_runs(
    conn: AsyncConnection, workspace_id: str, customers: Sequence[str]
) -> list[RunRow]:
    rows = await conn.execute(
        sa.text(
            f"SELECT {RUN_COLUMNS} FROM jr_runs WHERE workspace_id = :ws"  # noqa: S608
            " AND customer_id = ANY(CAST(:c AS text[])) AND status = 'active'"
            " ORDER BY run_id FOR UPDATE"
        ),
        {"ws": workspace_id, "c": list(customers)},
    )
    return [_run(row._mapping) for row in rows.all()]


_MIRROR_COLUMNS = "traits, trait_stamps, consent, suppressed, rfm"


async def lock_live_runs_and_load_mirrors(
    conn: AsyncConnection, workspace_id: str, customers: Sequence[str]
) -> tuple[list[RunRow], dict[str, Mirror]]:
    """``lock_live_runs`` then ``load_mirrors`` (no row lock), in one round trip."""
    run_part = ", ".join(f"r.{c.strip()}" for c in RUN_COLUMNS.split(","))
    no_run = ", ".join(
        "m.customer_id" if c.strip() == "customer_id" else "NULL" for c in RUN_COLUMNS.split(",")
    )
    rows = await fetch_direct(
        conn,
        f"WITH r AS (SELECT {RUN_COLUMNS} FROM jr_runs WHERE workspace_id = :ws"  # noqa: S608
        " AND customer_id = ANY(CAST(:c AS text[])) AND status = 'active'"
        " ORDER BY run_id FOR UPDATE)"
        f" SELECT {run_part}, CAST(NULL AS jsonb) AS traits, CAST(NULL AS jsonb) AS"
        " trait_stamps, CAST(NULL AS jsonb) AS consent, CAST(NULL AS text[]) AS suppressed,"
        " CAST(NULL AS jsonb) AS rfm FROM r"
        f" UNION ALL SELECT {no_run}, {_MIRROR_COLUMNS} FROM jr_customers m"
        " WHERE m.workspace_id = :ws AND m.customer_id = ANY(CAST(:c AS text[]))",
        {"ws": workspace_id, "c": list(customers)},
    )
    runs: list[RunRow] = []
    mirrors: dict[str, Mirror] = {}
    for row in rows:
        if row["run_id"] is not None:
            runs.append(_run(row))
        else:
            mirrors[row["customer_id"]] = Mirror(
                dict(row["traits"]),
                dict(row["trait_stamps"]),
                dict(row["consent"]),
                set(row["suppressed"]),
                dict(row["rfm"]),
            )
    return runs, mirrors


async def claim_due_runs(conn: AsyncConnection, now: datetime, limit: int) -> list[RunRow]:
    """Due runs of active journeys; a run another replica holds is skipped, not waited for."""
    rows = await conn.execute(
        sa.text(
            f"SELECT {', '.join('r.' + c.strip() for c in RUN_COLUMNS.split(','))}"  # noqa: S608
            " FROM jr_runs r JOIN jr_journeys j ON j.workspace_id = r.workspace_id"
            " AND j.id = r.journey_id AND j.status = 'active'"
            " WHERE r.due_at <= :now ORDER BY r.due_at LIMIT :n"
            " FOR UPDATE OF r SKIP LOCKED FOR SHARE OF j SKIP LOCKED"
        ),
        {"now": now, "n": limit},
    )
    return [_run(row._mapping) for row in rows.all()]


async def recent_runs(
    conn: AsyncConnection, workspace_id: str, customers: Sequence[str], since: datetime
) -> list[RunRow]:
    """Runs entered since ``since`` (for goals reached after the run ended)."""
    rows = await conn.execute(
        sa.text(
            f"SELECT {RUN_COLUMNS} FROM jr_runs WHERE workspace_id = :ws"  # noqa: S608
            " AND customer_id = ANY(CAST(:c AS text[])) AND entered_at >= :since"
            " AND status <> 'active' AND converted_at IS NULL"
        ),
        {"ws": workspace_id, "c": list(customers), "since": since},
    )
    return [_run(row._mapping) for row in rows.all()]


async def entry_history(
    conn: AsyncConnection, workspace_id: str, customers: Sequence[str]
) -> dict[tuple[str, str], datetime]:
    """(journey, customer) → when the customer last entered it."""
    rows = await conn.execute(
        sa.text(
            "SELECT journey_id, customer_id, max(entered_at) AS last FROM jr_runs"
            " WHERE workspace_id = :ws AND customer_id = ANY(CAST(:c AS text[]))"
            " GROUP BY journey_id, customer_id"
        ),
        {"ws": workspace_id, "c": list(customers)},
    )
    return {(r.journey_id, r.customer_id): r.last for r in rows.all()}


_RUN_UNNEST = (
    "unnest(CAST(:run_id AS text[]), CAST(:workspace_id AS text[]), CAST(:journey_id AS text[]),"
    " CAST(:version AS int[]), CAST(:customer_id AS text[]), CAST(:holdout AS bool[]),"
    " CAST(:step AS text[]), CAST(:visits AS jsonb[]), CAST(:data AS jsonb[]),"
    " CAST(:due_at AS timestamptz[]), CAST(:waiting_for AS text[]),"
    " CAST(:entered_at AS timestamptz[]), CAST(:status AS text[]),"
    " CAST(:ended_at AS timestamptz[]), CAST(:end_reason AS text[]),"
    " CAST(:converted_at AS timestamptz[]))"
)


def _run_columns(runs: Sequence[RunRow]) -> dict[str, list[Any]]:
    dumps = orjson.dumps
    return {
        "run_id": [r.run_id for r in runs],
        "workspace_id": [r.workspace_id for r in runs],
        "journey_id": [r.journey_id for r in runs],
        "version": [r.version for r in runs],
        "customer_id": [r.customer_id for r in runs],
        "holdout": [r.holdout for r in runs],
        "step": [r.step for r in runs],
        "visits": [dumps(r.visits).decode() for r in runs],
        "data": [dumps(r.data).decode() for r in runs],
        "due_at": [r.due_at for r in runs],
        "waiting_for": [r.waiting_for for r in runs],
        "entered_at": [r.entered_at for r in runs],
        "status": [r.status for r in runs],
        "ended_at": [r.ended_at for r in runs],
        "end_reason": [r.end_reason for r in runs],
        "converted_at": [r.converted_at for r in runs],
    }


async def save_runs(conn: AsyncConnection, runs: Sequence[RunRow]) -> None:
    """Writes runs back, all in one statement (each run id at most once)."""
    if not runs:
        return
    await fetch_direct(
        conn,
        f"INSERT INTO jr_runs ({RUN_COLUMNS}) SELECT * FROM {_RUN_UNNEST}"  # noqa: S608
        " ON CONFLICT (run_id) DO UPDATE SET customer_id = excluded.customer_id,"
        " step = excluded.step, visits = excluded.visits, due_at = excluded.due_at,"
        " waiting_for = excluded.waiting_for, status = excluded.status,"
        " ended_at = excluded.ended_at, end_reason = excluded.end_reason,"
        " converted_at = excluded.converted_at",
        _run_columns(runs),
    )


_CANCEL = (
    "SET status = 'cancelled', end_reason = :reason, ended_at = :now, due_at = NULL,"
    " waiting_for = NULL"
)


async def live_run_ids(
    conn: AsyncConnection, workspace_id: str, journey_id: str, after: str, limit: int
) -> list[str]:
    """The journey's live runs in run id order, ``limit`` from after ``after``."""
    rows = await conn.execute(
        sa.text(
            "SELECT run_id FROM jr_runs WHERE workspace_id = :ws AND journey_id = :j"
            " AND status = 'active' AND run_id > :after ORDER BY run_id LIMIT :n"
        ),
        {"ws": workspace_id, "j": journey_id, "after": after, "n": limit},
    )
    return [row.run_id for row in rows.all()]


async def cancel_runs(
    conn: AsyncConnection, run_ids: Sequence[str], reason: str, now: datetime
) -> list[RunRow]:
    """Ends those of the runs still live as cancelled; returns them as they are now."""
    rows = await conn.execute(
        sa.text(
            f"UPDATE jr_runs {_CANCEL} WHERE run_id = ANY(CAST(:ids AS text[]))"
            f" AND status = 'active' RETURNING {RUN_COLUMNS}"
        ),
        {"ids": list(run_ids), "reason": reason, "now": now},
    )
    return [_run(row._mapping) for row in rows.all()]


async def cancel_absorbed_runs(
    conn: AsyncConnection, workspace_id: str, absorbed: str, survivor: str, now: datetime
) -> list[RunRow]:
    """Cancels the absorbed customer's live runs of journeys the survivor has a live run of
    (``merged``); returns them."""
    rows = await conn.execute(
        sa.text(
            f"UPDATE jr_runs a {_CANCEL} WHERE a.workspace_id = :ws"  # noqa: S608
            " AND a.customer_id = :a AND a.status = 'active' AND EXISTS (SELECT 1 FROM jr_runs s"
            " WHERE s.workspace_id = :ws AND s.customer_id = :s AND s.journey_id = a.journey_id"
            f" AND s.status = 'active') RETURNING {RUN_COLUMNS}"
        ),
        {"ws": workspace_id, "a": absorbed, "s": survivor, "reason": "merged", "now": now},
    )
    return [_run(row._mapping) for row in rows.all()]


STEP_FIELDS = (
    "execution_id",
    "outcome",
    "workspace_id",
    "journey_id",
    "version",
    "run_id",
    "customer_id",
    "step_id",
    "step_type",
    "category",
    "detail",
    "at",
)


async def insert_new_runs(
    conn: AsyncConnection,
    runs: Sequence[RunRow],
    steps: Sequence[dict[str, Any]] = (),
    counted: Sequence[tuple[str, str, date, datetime]] = (),
    workspace_id: str = "",
) -> set[str]:
    """Inserts runs that may race with another replica's; returns the ids that got in. In the
    same statement: the step log rows (those of a new run only if the run got in, in order)
    and the per-day event counts of ``workspace_id`` ((customer, event, day, at) per event)."""
    if not runs and not steps and not counted:
        return set()
    new_ids = {r.run_id for r in runs}
    params: dict[str, Any] = _run_columns(runs)
    params["ws"] = workspace_id
    params |= {f"s_{name}": [row[name] for row in steps] for name in STEP_FIELDS}
    params["s_detail"] = [orjson.dumps(row["detail"]).decode() for row in steps]
    params["s_of_new"] = [row["run_id"] in new_ids for row in steps]
    params |= {
        "e_c": [r[0] for r in counted],
        "e_e": [r[1] for r in counted],
        "e_d": [r[2] for r in counted],
        "e_a": [r[3] for r in counted],
    }
    result = await fetch_direct(
        conn,
        (
            f"WITH ins AS (INSERT INTO jr_runs ({RUN_COLUMNS}) SELECT * FROM {_RUN_UNNEST}"  # noqa: S608
            " ON CONFLICT DO NOTHING RETURNING run_id),"
            " steps AS (INSERT INTO jr_steps (execution_id, outcome, workspace_id, journey_id,"
            " version, run_id, customer_id, step_id, step_type, category, detail, at)"
            " SELECT x, o, w, j, v, r, c, s, t, k, d, a FROM unnest("
            "CAST(:s_execution_id AS text[]), CAST(:s_outcome AS text[]),"
            " CAST(:s_workspace_id AS text[]),"
            " CAST(:s_journey_id AS text[]), CAST(:s_version AS int[]), CAST(:s_run_id AS text[]),"
            " CAST(:s_customer_id AS text[]), CAST(:s_step_id AS text[]),"
            " CAST(:s_step_type AS text[]), CAST(:s_category AS text[]),"
            " CAST(:s_detail AS jsonb[]), CAST(:s_at AS timestamptz[]),"
            " CAST(:s_of_new AS boolean[]))"
            " WITH ORDINALITY u(x, o, w, j, v, r, c, s, t, k, d, a, new_run, n)"
            " WHERE NOT new_run OR r IN (SELECT run_id FROM ins)"
            " ORDER BY n ON CONFLICT DO NOTHING),"
            " counts AS (INSERT INTO jr_customer_events (workspace_id, customer_id, event, day,"
            " count, last_at) SELECT :ws, c, e, d, count(*), max(a) FROM unnest("
            "CAST(:e_c AS text[]), CAST(:e_e AS text[]), CAST(:e_d AS date[]),"
            " CAST(:e_a AS timestamptz[])) x(c, e, d, a) GROUP BY c, e, d"
            " ON CONFLICT (workspace_id, customer_id, event, day) DO UPDATE SET"
            " count = jr_customer_events.count + excluded.count,"
            " last_at = greatest(jr_customer_events.last_at, excluded.last_at))"
            " SELECT run_id FROM ins"
        ),
        params,
    )
    return {row[0] for row in result}


async def marketing_sent(
    conn: AsyncConnection, workspace_id: str, customers: Sequence[str], since: datetime
) -> dict[str, list[datetime]]:
    rows = await conn.execute(
        sa.text(
            "SELECT customer_id, at FROM jr_steps WHERE workspace_id = :ws"
            " AND customer_id = ANY(CAST(:c AS text[])) AND outcome = 'sent'"
            " AND category = 'marketing' AND at > :since"
        ),
        {"ws": workspace_id, "c": list(customers), "since": since},
    )
    found: dict[str, list[datetime]] = {}
    for row in rows.all():
        found.setdefault(row.customer_id, []).append(row.at)
    return found


async def delivery_rules(conn: AsyncConnection, workspace_id: str) -> DeliveryRules | None:
    raw = await conn.scalar(
        sa.text("SELECT delivery FROM jr_settings WHERE workspace_id = :ws"), {"ws": workspace_id}
    )
    return None if raw is None else DeliveryRules.model_validate(raw)


# The customer mirror


async def load_mirrors(
    conn: AsyncConnection, workspace_id: str, customers: Sequence[str], *, lock: bool = False
) -> dict[str, Mirror]:
    query = (
        "SELECT customer_id, traits, trait_stamps, consent, suppressed, rfm FROM jr_customers"
        " WHERE workspace_id = :ws AND customer_id = ANY(CAST(:c AS text[])) ORDER BY customer_id"
    )
    rows = await conn.execute(
        sa.text(query + (" FOR UPDATE" if lock else "")),
        {"ws": workspace_id, "c": list(customers)},
    )
    return {
        r.customer_id: Mirror(
            dict(r.traits), dict(r.trait_stamps), dict(r.consent), set(r.suppressed), dict(r.rfm)
        )
        for r in rows.all()
    }


async def save_mirrors(
    conn: AsyncConnection, workspace_id: str, mirrors: dict[str, Mirror]
) -> None:
    if not mirrors:
        return
    await conn.execute(
        sa.text(
            "INSERT INTO jr_customers (workspace_id, customer_id, traits, trait_stamps, consent,"
            " suppressed, rfm, updated_at) VALUES (:ws, :c, CAST(:t AS jsonb), CAST(:s AS jsonb),"
            " CAST(:k AS jsonb), CAST(:x AS text[]), CAST(:r AS jsonb), now())"
            " ON CONFLICT (workspace_id, customer_id) DO UPDATE SET traits = excluded.traits,"
            " trait_stamps = excluded.trait_stamps, consent = excluded.consent,"
            " suppressed = excluded.suppressed, rfm = excluded.rfm, updated_at = now()"
        ),
        [
            {
                "ws": workspace_id,
                "c": customer,
                "t": orjson.dumps(m.traits).decode(),
                "s": orjson.dumps(m.trait_stamps).decode(),
                "k": orjson.dumps(m.consent).decode(),
                "x": sorted(m.suppressed),
                "r": orjson.dumps(m.rfm).decode(),
            }
            for customer, m in mirrors.items()
        ],
    )


async def segments_of(
    conn: AsyncConnection, workspace_id: str, customers: Sequence[str]
) -> dict[str, set[str]]:
    rows = await conn.execute(
        sa.text(
            "SELECT customer_id, segment_id FROM jr_segments WHERE workspace_id = :ws"
            " AND customer_id = ANY(CAST(:c AS text[])) AND member"
        ),
        {"ws": workspace_id, "c": list(customers)},
    )
    found: dict[str, set[str]] = {}
    for row in rows.all():
        found.setdefault(row.customer_id, set()).add(row.segment_id)
    return found


async def record_segment_changes(
    conn: AsyncConnection,
    workspace_id: str,
    changes: Sequence[tuple[str, str, bool, datetime, str]],
) -> set[str]:
    """(customer, segment, member, at, event id) each; keeps the newest change per (customer,
    segment) and returns the ids of the changes that are now the newest."""
    if not changes:
        return set()
    newest: dict[tuple[str, str], tuple[str, str, bool, datetime, str]] = {}
    for change in changes:
        key = (change[0], change[1])
        if key not in newest or (change[3], change[4]) > (newest[key][3], newest[key][4]):
            newest[key] = change
    rows = list(newest.values())
    result = await conn.execute(
        sa.text(
            "INSERT INTO jr_segments (workspace_id, customer_id, segment_id, member, changed_at,"
            " event_id) SELECT :ws, c, s, m, a, i FROM unnest(CAST(:c AS text[]),"
            " CAST(:s AS text[]), CAST(:m AS bool[]), CAST(:a AS timestamptz[]),"
            " CAST(:i AS text[])) x(c, s, m, a, i)"
            " ON CONFLICT (workspace_id, customer_id, segment_id) DO UPDATE SET"
            " member = excluded.member, changed_at = excluded.changed_at,"
            " event_id = excluded.event_id"
            " WHERE (jr_segments.changed_at, jr_segments.event_id)"
            " < (excluded.changed_at, excluded.event_id) RETURNING event_id"
        ),
        {
            "ws": workspace_id,
            "c": [r[0] for r in rows],
            "s": [r[1] for r in rows],
            "m": [r[2] for r in rows],
            "a": [r[3] for r in rows],
            "i": [r[4] for r in rows],
        },
    )
    return {row.event_id for row in result.all()}


async def event_days(
    conn: AsyncConnection, workspace_id: str, customers: Sequence[str], events: Iterable[str]
) -> dict[str, dict[str, dict[date, int]]]:
    names = sorted(set(events))
    if not names:
        return {}
    rows = await conn.execute(
        sa.text(
            "SELECT customer_id, event, day, count FROM jr_customer_events"
            " WHERE workspace_id = :ws AND customer_id = ANY(CAST(:c AS text[]))"
            " AND event = ANY(CAST(:e AS text[]))"
        ),
        {"ws": workspace_id, "c": list(customers), "e": names},
    )
    found: dict[str, dict[str, dict[date, int]]] = {}
    for r in rows.all():
        found.setdefault(r.customer_id, {}).setdefault(r.event, {})[r.day] = r[3]
    return found


async def last_event_at(
    conn: AsyncConnection, workspace_id: str, customer_id: str, event: str
) -> datetime | None:
    value: datetime | None = await conn.scalar(
        sa.text(
            "SELECT max(last_at) FROM jr_customer_events WHERE workspace_id = :ws"
            " AND customer_id = :c AND event = :e"
        ),
        {"ws": workspace_id, "c": customer_id, "e": event},
    )
    return value


async def first_new_events_locked(
    conn: AsyncConnection, workspace_id: str, events: Sequence[tuple[str, str]]
) -> set[str]:
    """``first_new_events`` and ``lock_customers`` of the new ones' customers in one
    statement: (event id, customer) each, the first of an id counting. Every id is recorded
    before the first lock is taken, and the locks are taken in the global order."""
    first = dict(reversed(events))  # the first customer of each id wins
    ids = list(dict.fromkeys(event_id for event_id, _ in events))
    rows = await conn.execute(
        sa.text(
            "WITH x AS (SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:c AS text[])) x(i, c)),"
            " fresh AS (INSERT INTO jr_seen_events (workspace_id, event_id)"
            " SELECT :ws, i FROM x ON CONFLICT DO NOTHING RETURNING event_id),"
            " locked AS (SELECT count(*) AS n FROM (SELECT pg_advisory_xact_lock(k) FROM"
            " (SELECT DISTINCT hashtextextended(:ws || ':' || x.c, :space) AS k"
            " FROM fresh JOIN x ON x.i = fresh.event_id ORDER BY k) keys) l)"
            " SELECT event_id FROM fresh, locked WHERE locked.n >= 0"
        ),
        {"ws": workspace_id, "ids": ids, "c": [first[i] for i in ids], "space": LOCK_SPACE},
    )
    return {row.event_id for row in rows.all()}


# Trigger schedules


@dataclass(frozen=True)
class Schedule:
    workspace_id: str
    journey_id: str
    customer_id: str
    kind: str
    due_at: datetime
    data: dict[str, Any]


async def upsert_schedules(conn: AsyncConnection, schedules: Sequence[Schedule]) -> None:
    if not schedules:
        return
    await conn.execute(
        sa.text(
            "INSERT INTO jr_schedules (workspace_id, journey_id, customer_id, kind, due_at, data)"
            " VALUES (:workspace_id, :journey_id, :customer_id, :kind, :due_at,"
            " CAST(:data AS jsonb)) ON CONFLICT (workspace_id, journey_id, customer_id, kind)"
            " DO UPDATE SET due_at = excluded.due_at, data = excluded.data"
        ),
        [{**vars(s), "data": orjson.dumps(s.data).decode()} for s in schedules],
    )


async def delete_schedules(conn: AsyncConnection, schedules: Sequence[Schedule]) -> None:
    if not schedules:
        return
    await conn.execute(
        sa.text(
            "DELETE FROM jr_schedules WHERE workspace_id = :workspace_id"
            " AND journey_id = :journey_id AND customer_id = :customer_id AND kind = :kind"
        ),
        [
            {k: getattr(s, k) for k in ("workspace_id", "journey_id", "customer_id", "kind")}
            for s in schedules
        ],
    )


async def claim_due_schedules(conn: AsyncConnection, now: datetime, limit: int) -> list[Schedule]:
    rows = await conn.execute(
        sa.text(
            "SELECT s.workspace_id, s.journey_id, s.customer_id, s.kind, s.due_at, s.data"
            " FROM jr_schedules s JOIN jr_journeys j ON j.workspace_id = s.workspace_id"
            " AND j.id = s.journey_id AND j.status = 'active'"
            " WHERE s.due_at <= :now ORDER BY s.due_at LIMIT :n"
            " FOR UPDATE OF s SKIP LOCKED FOR SHARE OF j SKIP LOCKED"
        ),
        {"now": now, "n": limit},
    )
    return [Schedule(*row) for row in rows.all()]


async def segment_members(
    conn: AsyncConnection, workspace_id: str, segment_id: str, after: str, limit: int
) -> list[str]:
    rows = await conn.execute(
        sa.text(
            "SELECT customer_id FROM jr_segments WHERE workspace_id = :ws AND segment_id = :s"
            " AND member AND customer_id > :after ORDER BY customer_id LIMIT :n"
        ),
        {"ws": workspace_id, "s": segment_id, "after": after, "n": limit},
    )
    return [row.customer_id for row in rows.all()]
