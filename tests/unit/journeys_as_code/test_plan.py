"""Normalising, comparing and planning without I/O."""

from __future__ import annotations

from typing import Any

import pytest

from kizuna.journeys_as_code.document import Item, Kind, Source
from kizuna.journeys_as_code.layout import ordered, walk
from kizuna.journeys_as_code.normalise import canonical, normalise, server_body
from kizuna.journeys_as_code.plan import Current, change_of, moves_between, summary

JOURNEY: dict[str, Any] = {
    "name": "Cart",
    "trigger": {"type": "event", "event": "Checkout Started"},
    "holdout_percent": 10,
    "start": "wait",
    "steps": {
        "mail": {"type": "send", "channel": "email", "template": "t", "next": "done"},
        "done": {"type": "end"},
        "wait": {"type": "wait", "duration": "PT1H", "next": "mail"},
    },
}


def item(kind: Kind, body: dict[str, Any], status: str | None = None) -> Item:
    return Item(kind, "x", body, Source("f.yaml", kind, 0), status)


def same(kind: Kind, a: dict[str, Any], b: dict[str, Any]) -> bool:
    return canonical(normalise(kind, a)) == canonical(normalise(kind, b))


def test_server_fields_are_not_part_of_a_definition() -> None:
    segment = {"id": "s", "name": "S", "description": "", "conditions": {"all": []},
               "time_based": False, "members": 3, "version": 2, "created_at": "…"}  # fmt: skip
    assert server_body("segments", segment) == {
        "name": "S",
        "description": "",
        "conditions": {"all": []},
    }
    template = {"id": "t", "version": 4, "updated_at": "…", "channel": "email", "name": ""}
    assert server_body("templates", template) == {"channel": "email", "name": ""}
    journey = {"id": "j", "status": "active", "version": 3, "live_runs": 9, "definition": JOURNEY}
    assert server_body("journeys", journey) == JOURNEY


def test_the_defaults_a_service_fills_in_compare_equal_to_leaving_them_out() -> None:
    assert same("segments", {"name": "S", "description": ""}, {"name": "S"})
    assert same(
        "templates",
        {"channel": "email", "subject": "s", "text": None, "locales": {"ja": {"text": None}}},
        {"channel": "email", "subject": "s", "name": "", "locales": {"ja": {}}},
    )
    assert same("templates", {"channel": "email", "locales": {}}, {"channel": "email"})
    assert same("journeys", JOURNEY, {**JOURNEY, "holdout_percent": 10.0})
    split = {"type": "split", "branches": [{"weight": 1, "next": "a"}, {"weight": 1.0}]}
    assert same("journeys", {"steps": {"s": split}}, {"steps": {"s": ordered(split)}})
    where = {"type": "event", "event": "E", "where": [{"property": "p", "op": "range", "min": 1}]}
    floats = {**where, "where": [{"property": "p", "op": "range", "min": 1.0}]}
    assert same("journeys", {"trigger": where}, {"trigger": floats})


def test_a_broadcast_time_compares_by_instant_and_offset() -> None:
    def broadcast(at: str) -> dict[str, Any]:
        return {"trigger": {"type": "broadcast", "segment": "s", "at": at}}

    assert same(
        "journeys", broadcast("2026-01-01T09:00:00+00:00"), broadcast("2026-01-01T09:00:00Z")
    )
    assert not same(
        "journeys", broadcast("2026-01-01T09:00:00+09:00"), broadcast("2026-01-01T00:00:00Z")
    )


def test_what_differs_in_meaning_is_a_change() -> None:
    def leaf(value: Any) -> dict[str, Any]:
        return {"conditions": {"trait": "blocked", "op": "equals", "value": value}}

    assert not same("segments", leaf(True), leaf(1))  # equal in Python, not in JSON
    assert not same("segments", leaf([1, 2]), leaf([2, 1]))
    assert same("segments", {"name": "S", "conditions": {"a": 1, "b": 2}},
                {"conditions": {"b": 2, "a": 1}, "name": "S"})  # fmt: skip


def test_keys_come_in_a_stable_readable_order_and_steps_as_a_run_walks_them() -> None:
    written = ordered({"steps": JOURNEY["steps"], "start": "wait", "name": "Cart", "id": "c",
                       "status": "active", "trigger": JOURNEY["trigger"]})  # fmt: skip
    assert list(written) == ["id", "name", "trigger", "start", "steps", "status"]
    assert list(written["steps"]) == ["wait", "mail", "done"]
    assert list(written["steps"]["mail"]) == ["type", "channel", "template", "next"]
    steps = {
        "w": {"type": "wait_for_event", "on_event": "yes", "on_timeout": "no"},
        "no": {"type": "end"},
        "yes": {"type": "split", "branches": [{"next": "b"}, {"next": "a"}]},
        "a": {"type": "end"},
        "b": {"type": "end"},
        "lost": {"type": "end"},
    }
    assert walk("w", steps) == ["w", "yes", "b", "a", "no", "lost"]


def test_an_item_is_created_updated_or_unchanged() -> None:
    new = change_of(item("journeys", JOURNEY), None)
    assert new.action == "create"
    assert new.diff().startswith("--- /dev/null\n+++ journey x (file)")
    stored = Current(normalise("journeys", {**JOURNEY, "holdout_percent": 10.0}), "draft")
    assert change_of(item("journeys", JOURNEY), stored).action == "unchanged"
    assert change_of(item("journeys", JOURNEY), stored).diff() == ""
    edited = {**JOURNEY, "steps": {**JOURNEY["steps"], "wait": {"type": "wait",
              "duration": "PT2H", "next": "mail"}}}  # fmt: skip
    change = change_of(item("journeys", edited), stored)
    assert change.action == "update"
    assert '-      "duration": "PT1H",' in change.diff().splitlines()
    assert '+      "duration": "PT2H",' in change.diff().splitlines()


@pytest.mark.parametrize(
    ("current", "desired", "moves", "problem"),
    [
        ("draft", None, (), None),
        ("draft", "draft", (), None),
        ("draft", "active", ("activate",), None),
        ("paused", "active", ("activate",), None),
        ("active", "paused", ("pause",), None),
        ("active", "active", (), None),
        ("draft", "paused", (), "a draft cannot be paused"),
        ("active", "draft", (), "cannot go back to draft"),
        ("paused", "draft", (), "cannot go back to draft"),
    ],
)
def test_status_moves(
    current: str, desired: str | None, moves: tuple[str, ...], problem: str | None
) -> None:
    found_moves, found_problem = moves_between(current, desired)
    assert found_moves == moves
    assert (found_problem is None) == (problem is None)
    if problem is not None:
        assert problem in str(found_problem)


def test_a_new_journey_is_a_draft_until_activated_and_an_archived_one_is_refused() -> None:
    assert change_of(item("journeys", JOURNEY, "active"), None).moves == ("activate",)
    stored = Current(normalise("journeys", JOURNEY), "archived")
    archived = change_of(item("journeys", JOURNEY, "active"), stored)
    assert archived.problem is not None
    assert archived.problem_line().startswith("f.yaml: journeys[0]: the journey is archived")
    wrong = change_of(item("journeys", JOURNEY, "paused"), None)
    assert wrong.problem_line().startswith("f.yaml: journeys[0].status: a draft cannot")


def test_the_summary_counts_each_kind_of_change() -> None:
    changes = [
        change_of(item("journeys", JOURNEY, "active"), None),
        change_of(item("segments", {"name": "S"}), Current({"name": "S"})),
    ]
    assert summary(changes, dry_run=False) == (
        "1 created, 0 updated, 1 status changes, 1 unchanged."
    )
    assert summary(changes, dry_run=True).endswith("1 unchanged. Nothing was changed.")
