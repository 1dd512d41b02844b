"""A hand-written stand-in for the three services' APIs: it stores what it is given the way
the services do (defaults filled in, floats as floats, versions counted) and logs each call."""

from __future__ import annotations

import copy
from typing import Any

from kizuna.journeys_as_code.document import Kind
from kizuna.journeys_as_code.remote import ApiError

MOVES = {"activate": ({"draft", "paused"}, "active"), "pause": ({"active"}, "paused")}


class FakeApi:
    def __init__(self) -> None:
        self.state: dict[Kind, dict[str, dict[str, Any]]] = {
            "segments": {},
            "templates": {},
            "journeys": {},
        }
        self.calls: list[tuple[str, Kind, str]] = []
        self.refuse: dict[tuple[Kind, str], ApiError] = {}

    def get(self, kind: Kind, item_id: str) -> dict[str, Any] | None:
        found = self.state[kind].get(item_id)
        return copy.deepcopy(found) if found is not None else None

    def list(self, kind: Kind) -> list[dict[str, Any]]:
        views = list(self.state[kind].values())
        if kind == "segments":
            return copy.deepcopy(views)
        return [{"id": v["id"], "status": v.get("status")} for v in views]

    def save(
        self, kind: Kind, item_id: str, body: dict[str, Any], *, exists: bool
    ) -> dict[str, Any]:
        self.calls.append(("update" if exists else "create", kind, item_id))
        if (kind, item_id) in self.refuse:
            raise self.refuse[(kind, item_id)]
        old = self.state[kind].get(item_id)
        version = (old["version"] + 1) if old else 1
        body = copy.deepcopy(body)
        if kind == "segments":
            view = {"id": item_id, "description": "", **body, "members": 0, "version": version}
        elif kind == "templates":
            stored = {k: v for k, v in body.items() if v is not None}
            view = {"id": item_id, "name": "", "locales": {}, **stored, "version": version}
        else:
            if "holdout_percent" in body:
                body["holdout_percent"] = float(body["holdout_percent"])
            status = old["status"] if old else "draft"
            view = {"id": item_id, "status": status, "version": version, "definition": body}
        self.state[kind][item_id] = view
        return copy.deepcopy(view)

    def move(self, journey_id: str, action: str) -> dict[str, Any]:
        self.calls.append((action, "journeys", journey_id))
        view = self.state["journeys"][journey_id]
        allowed, target = MOVES[action]
        if view["status"] not in allowed:
            raise ApiError("journey", 409, f"a {view['status']} journey cannot {action}")
        view["status"] = target
        return copy.deepcopy(view)
