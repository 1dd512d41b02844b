"""Applying items to a workspace and exporting one, through any ``Api`` (HTTP in use, a fake
in unit tests): read the current state, plan, then save in dependency order — segments,
templates, journeys — and change journey statuses last."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from kizuna.journeys_as_code.document import KINDS, SINGULAR, Item, Kind
from kizuna.journeys_as_code.layout import ordered
from kizuna.journeys_as_code.normalise import canonical, normalise, server_body
from kizuna.journeys_as_code.plan import Change, Current, current_of, plan_changes, unified
from kizuna.journeys_as_code.remote import ApiError

Echo = Callable[[str], None]
DONE = {"create": "created", "update": "updated", "activate": "activated", "pause": "paused"}


class Api(Protocol):
    def get(self, kind: Kind, item_id: str) -> dict[str, Any] | None: ...
    def list(self, kind: Kind) -> list[dict[str, Any]]: ...
    def save(
        self, kind: Kind, item_id: str, body: dict[str, Any], *, exists: bool
    ) -> dict[str, Any]: ...
    def move(self, journey_id: str, action: str) -> dict[str, Any]: ...


def current(api: Api, kind: Kind, item_id: str) -> Current | None:
    view = api.get(kind, item_id)
    return None if view is None else current_of(kind, server_body(kind, view), view)


def plan(api: Api, items: list[Item]) -> list[Change]:
    return plan_changes(items, {item.key: current(api, item.kind, item.id) for item in items})


def execute(api: Api, changes: list[Change], echo: Echo) -> list[str]:
    """Saves what differs, kind by kind; after a kind with errors nothing more is done (what
    follows may need it). Returns the errors, each naming the file and the item."""
    errors: list[str] = []
    for kind in KINDS:
        for change in (c for c in changes if c.item.kind == kind):
            errors.extend(_save(api, change, echo))
        if errors:
            left = [c.item.label for c in changes if KINDS.index(c.item.kind) > KINDS.index(kind)]
            if left:
                errors.append(f"not applied because of the errors above: {', '.join(left)}")
            return errors
    for change in changes:
        for action in change.moves:
            try:
                api.move(change.item.id, action)
            except ApiError as error:
                errors.extend(refused(change.item, error))
                break
            echo(f"{change.item.label}: {DONE[action]}")
    return errors


def _save(api: Api, change: Change, echo: Echo) -> list[str]:
    item = change.item
    if change.action == "unchanged":
        echo(f"{item.label}: unchanged")
        return []
    try:
        saved = api.save(item.kind, item.id, item.body, exists=change.action == "update")
    except ApiError as error:
        return refused(item, error)
    echo(f"{item.label}: {DONE[change.action]}")
    for warning in saved.get("warnings") or []:
        echo(f"  warning: {warning}")
    stored = normalise(item.kind, server_body(item.kind, saved))
    if canonical(stored) != canonical(change.after):
        echo(
            f"  warning: the {SINGULAR[item.kind]} is stored in another spelling than the file's;"
            " apply will keep reporting it as an update until the file says the same:\n"
            + unified(change.after, stored, item.label, ("file", "stored"))
        )
    return []


def refused(item: Item, error: ApiError) -> list[str]:
    head = f"{item.source.at()} ({item.label}): {error}"
    return [head, *(f"{item.source.at(name or None)}: {problem}" for name, problem in error.fields)]


def export(api: Api, skipped: Echo) -> dict[str, list[dict[str, Any]]]:
    """Every rule segment, template and journey (archived ones left out) in the file format:
    ordered by id, keys in a stable order."""
    document: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        views = api.list(kind)
        if kind != "segments":  # the lists of templates and journeys are summaries
            for view in views:
                if view.get("status") == "archived":
                    skipped(f"journey {view['id']}: archived, left out")
            views = [
                full
                for view in views
                if view.get("status") != "archived"
                and (full := api.get(kind, str(view["id"]))) is not None
            ]
        document[kind] = sorted((_exported(kind, v) for v in views), key=lambda i: i["id"])
    return document


def _exported(kind: Kind, view: dict[str, Any]) -> dict[str, Any]:
    status = {"status": view["status"]} if kind == "journeys" else {}
    body: dict[str, Any] = ordered(normalise(kind, server_body(kind, view)))
    return {"id": view["id"], **status, **body}
