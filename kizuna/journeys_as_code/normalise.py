"""What of an item is compared.

Both sides of a comparison go through ``normalise``: fields the server adds (version, times,
counts) are never part of a body, defaults the server fills in are dropped, and values it
stores in another spelling (an int in a float field, a UTC time as ``Z``) are spelt one way."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kizuna.journeys_as_code.document import Kind

SEGMENT_BODY = ("name", "description", "conditions")
TEMPLATE_SERVER_FIELDS = frozenset({"id", "version", "created_at", "updated_at"})


def server_body(kind: Kind, view: Mapping[str, Any]) -> dict[str, Any]:
    """The definition inside what a GET answers, without what the server adds."""
    if kind == "segments":
        return {k: view[k] for k in SEGMENT_BODY if k in view}
    if kind == "templates":
        return {k: v for k, v in view.items() if k not in TEMPLATE_SERVER_FIELDS}
    definition: dict[str, Any] = view["definition"]
    return definition


def normalise(kind: Kind, body: Mapping[str, Any]) -> dict[str, Any]:
    if kind == "segments":
        return {k: v for k, v in body.items() if not (k == "description" and v == "")}
    if kind == "templates":
        return _template(body)
    return _journey(body)


def _template(body: Mapping[str, Any]) -> dict[str, Any]:
    """The notifier leaves out empty parts and fills in ``name: ""`` and ``locales: {}``."""
    out = {k: v for k, v in body.items() if v is not None}
    if isinstance(out.get("locales"), dict):
        out["locales"] = {
            name: {k: v for k, v in parts.items() if v is not None}
            if isinstance(parts, dict)
            else parts
            for name, parts in out["locales"].items()
        }
    if out.get("locales") == {}:
        del out["locales"]
    if out.get("name") == "":
        del out["name"]
    return out


def _journey(body: Mapping[str, Any]) -> dict[str, Any]:
    """The journey service stores its float fields as floats and times in its own spelling."""
    out = dict(body)
    if "holdout_percent" in out:
        out["holdout_percent"] = _float(out["holdout_percent"])
    trigger = out.get("trigger")
    if isinstance(trigger, dict):
        trigger = _filters(trigger)
        if trigger.get("type") == "broadcast" and "at" in trigger:
            trigger["at"] = _instant(trigger["at"])
        out["trigger"] = trigger
    if isinstance(out.get("goal"), dict):
        out["goal"] = _filters(out["goal"])
    if isinstance(out.get("exit"), list):
        out["exit"] = [_filters(e) if isinstance(e, dict) else e for e in out["exit"]]
    if isinstance(out.get("steps"), dict):
        out["steps"] = {k: _step(s) for k, s in out["steps"].items()}
    return out


def _step(step: Any) -> Any:
    if not isinstance(step, dict):
        return step
    step = _filters(step)
    if isinstance(step.get("branches"), list):
        step["branches"] = [
            {**b, "weight": _float(b["weight"])} if isinstance(b, dict) and "weight" in b else b
            for b in step["branches"]
        ]
    return step


def _filters(part: dict[str, Any]) -> dict[str, Any]:
    """Property filters' ``min`` and ``max`` are floats."""
    if not isinstance(part.get("where"), list):
        return dict(part)
    where = [
        {**f, **{k: _float(f[k]) for k in ("min", "max") if k in f}} if isinstance(f, dict) else f
        for f in part["where"]
    ]
    return {**part, "where": where}


def _float(value: Any) -> Any:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _instant(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is None:
        return value
    text = parsed.isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def canonical(value: Any) -> str:
    """One text per meaning: equal texts, nothing to change."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
