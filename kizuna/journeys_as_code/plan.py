"""What applying the files would change: per item create, update or unchanged, the journey
status changes that follow, and a readable diff. Pure: the current state is given."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kizuna.journeys_as_code.document import Item, Kind
from kizuna.journeys_as_code.layout import ordered
from kizuna.journeys_as_code.normalise import canonical, normalise

Action = Literal["create", "update", "unchanged"]
# (from, to) → the calls that get there; a new journey starts as a draft
MOVES: dict[tuple[str, str], tuple[str, ...]] = {
    ("draft", "active"): ("activate",),
    ("paused", "active"): ("activate",),
    ("active", "paused"): ("pause",),
}
CANNOT = {
    ("draft", "paused"): "a draft cannot be paused before it has been active; use draft or active",
    ("active", "draft"): "an active journey cannot go back to draft; use paused",
    ("paused", "draft"): "a paused journey cannot go back to draft; keep it paused",
}

ARCHIVED = "the journey is archived: it cannot be edited or resumed; give it a new id"


@dataclass(frozen=True)
class Current:
    body: dict[str, Any]  # normalised
    status: str | None = None


@dataclass(frozen=True)
class Change:
    item: Item
    action: Action
    before: dict[str, Any] | None
    after: dict[str, Any]
    status_before: str | None = None
    moves: tuple[str, ...] = ()
    problem: str | None = None

    @property
    def changes_anything(self) -> bool:
        return self.action != "unchanged" or bool(self.moves)

    def describe(self) -> str:
        words: list[str] = [self.action]
        if self.moves:
            words.append(f"{self.status_before or 'draft'} → {self.item.status}")
        return f"{self.item.label}: {', '.join(words)}"

    def problem_line(self) -> str:
        field = None if self.status_before == "archived" else "status"
        return f"{self.item.source.at(field)}: {self.problem}"

    def diff(self) -> str:
        if self.action == "unchanged":
            return ""
        return unified(self.before, self.after, self.item.label)


def current_of(kind: Kind, body: Mapping[str, Any], view: Mapping[str, Any]) -> Current:
    status = view.get("status") if kind == "journeys" else None
    return Current(normalise(kind, body), status if isinstance(status, str) else None)


def plan_changes(
    items: list[Item], currents: Mapping[tuple[Kind, str], Current | None]
) -> list[Change]:
    return [change_of(item, currents.get(item.key)) for item in items]


def change_of(item: Item, current: Current | None) -> Change:
    after = normalise(item.kind, item.body)
    if current is None:
        action: Action = "create"
    elif canonical(current.body) == canonical(after):
        action = "unchanged"
    else:
        action = "update"
    before = current.body if current is not None else None
    status = current.status if current is not None else None
    if status == "archived":
        return Change(item, action, before, after, status, problem=ARCHIVED)
    moves, problem = moves_between(status or "draft", item.status)
    return Change(item, action, before, after, status, moves, problem)


def moves_between(current: str, desired: str | None) -> tuple[tuple[str, ...], str | None]:
    if desired is None or desired == current:
        return (), None
    if (current, desired) in CANNOT:
        return (), CANNOT[(current, desired)]
    return MOVES.get((current, desired), ()), None


def unified(
    before: dict[str, Any] | None,
    after: dict[str, Any],
    label: str,
    names: tuple[str, str] = ("current", "file"),
) -> str:
    old = _lines(before) if before is not None else []
    was = f"{label} ({names[0]})" if before is not None else "/dev/null"
    lines = difflib.unified_diff(old, _lines(after), was, f"{label} ({names[1]})", lineterm="", n=2)
    return "\n".join(lines)


def _lines(body: dict[str, Any]) -> list[str]:
    return json.dumps(ordered(body), indent=2, ensure_ascii=False).splitlines()


def summary(changes: list[Change], *, dry_run: bool) -> str:
    counts = {a: sum(c.action == a for c in changes) for a in ("create", "update", "unchanged")}
    moves = sum(bool(c.moves) for c in changes)
    if dry_run:
        return (
            f"dry run: would create {counts['create']}, update {counts['update']} and change"
            f" the status of {moves}; {counts['unchanged']} unchanged. Nothing was changed."
        )
    return (
        f"{counts['create']} created, {counts['update']} updated, {moves} status changes,"
        f" {counts['unchanged']} unchanged."
    )
