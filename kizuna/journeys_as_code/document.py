"""The file format: a document with optional lists ``segments``, ``templates`` and ``journeys``;
each item has an ``id`` and the body its API takes (a journey also an optional ``status``).

Only the shape is checked here; the services check the contents when they are saved."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["segments", "templates", "journeys"]
KINDS: tuple[Kind, ...] = ("segments", "templates", "journeys")  # dependency order
SINGULAR: dict[Kind, str] = {"segments": "segment", "templates": "template", "journeys": "journey"}
STATUSES = ("draft", "active", "paused")
SEGMENT_FIELDS = frozenset({"id", "name", "description", "conditions"})


@dataclass(frozen=True)
class Source:
    path: str
    kind: Kind
    index: int

    def at(self, field: str | None = None) -> str:
        where = f"{self.path}: {self.kind}[{self.index}]"
        return f"{where}.{field}" if field else where


@dataclass(frozen=True)
class Item:
    kind: Kind
    id: str
    body: dict[str, Any]  # as the API takes it, without the id and the status
    source: Source
    status: str | None = None

    @property
    def key(self) -> tuple[Kind, str]:
        return (self.kind, self.id)

    @property
    def label(self) -> str:
        return f"{SINGULAR[self.kind]} {self.id}"


def read_document(path: str, data: Any) -> tuple[list[Item], list[str]]:
    """The items of one parsed file, and what is wrong with its shape."""
    if data is None:
        return [], []
    if not isinstance(data, dict):
        return [], [f"{path}: must be a mapping with segments, templates and/or journeys"]
    problems = [
        f"{path}: {key}: unknown section; expected {', '.join(KINDS)}"
        for key in data
        if key not in KINDS
    ]
    items: list[Item] = []
    for kind in KINDS:
        entries = data.get(kind)
        if entries is None:
            continue
        if not isinstance(entries, list):
            problems.append(f"{path}: {kind}: must be a list")
            continue
        for index, entry in enumerate(entries):
            item, found = _item(Source(path, kind, index), entry)
            problems.extend(found)
            if item is not None:
                items.append(item)
    return items, problems


def _item(source: Source, entry: Any) -> tuple[Item | None, list[str]]:
    if not isinstance(entry, dict):
        return None, [f"{source.at()}: must be a mapping"]
    item_id = entry.get("id")
    if not isinstance(item_id, str) or not item_id.strip():
        return None, [f"{source.at('id')}: must be a non-empty string"]
    problems: list[str] = []
    body = {k: v for k, v in entry.items() if k != "id"}
    status = None
    if source.kind == "journeys" and "status" in body:
        status = body.pop("status")
        if status not in STATUSES:
            problems.append(f"{source.at('status')}: must be one of {', '.join(STATUSES)}")
    if source.kind == "segments":
        problems.extend(
            f"{source.at(key)}: unknown field; a segment has {', '.join(sorted(SEGMENT_FIELDS))}"
            for key in body
            if key not in SEGMENT_FIELDS
        )
    return Item(source.kind, item_id, body, source, status), problems


def merge(items: Iterable[Item]) -> tuple[list[Item], list[str]]:
    """Every item once, in dependency order (file order within a kind); an id given twice is
    a problem naming both places."""
    seen: dict[tuple[Kind, str], Item] = {}
    problems: list[str] = []
    for item in items:
        first = seen.get(item.key)
        if first is not None:
            problems.append(f"{item.source.at('id')}: {item.id!r} is also {first.source.at()}")
            continue
        seen[item.key] = item
    ordered = sorted(seen.values(), key=lambda i: KINDS.index(i.kind))
    return ordered, problems
