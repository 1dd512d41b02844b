"""Applying and exporting through a fake of the three APIs: order, idempotence, errors."""

from __future__ import annotations

from typing import Any

from kizuna.journeys_as_code import run
from kizuna.journeys_as_code.document import Item, merge, read_document
from kizuna.journeys_as_code.remote import ApiError, error_of
from tests.unit.journeys_as_code.fakes import FakeApi

DOCUMENT: dict[str, Any] = {
    "journeys": [
        {
            "id": "cart",
            "status": "active",
            "name": "Cart",
            "trigger": {"type": "event", "event": "Checkout Started"},
            "holdout_percent": 10,
            "start": "mail",
            "steps": {"mail": {"type": "send", "channel": "email", "template": "remind"}},
        },
        {
            "id": "vip",
            "name": "VIP",
            "trigger": {"type": "segment", "segment": "tea", "on": "entered"},
            "start": "end",
            "steps": {"end": {"type": "end"}},
        },
    ],
    "templates": [{"id": "remind", "channel": "email", "subject": "Hi", "text": None}],
    "segments": [{"id": "tea", "name": "Tea", "conditions": {"trait": "t", "op": "exists"}}],
}


def items(document: dict[str, Any] = DOCUMENT) -> list[Item]:
    found, problems = read_document("j.yaml", document)
    merged, duplicates = merge(found)
    assert problems == duplicates == []
    return merged


def apply(api: FakeApi, document: dict[str, Any] = DOCUMENT) -> tuple[list[str], list[str]]:
    said: list[str] = []
    errors = run.execute(api, run.plan(api, items(document)), said.append)
    return said, errors


def test_apply_creates_in_dependency_order_and_sets_statuses_last() -> None:
    api = FakeApi()
    said, errors = apply(api)
    assert errors == []
    assert api.calls == [
        ("create", "segments", "tea"),
        ("create", "templates", "remind"),
        ("create", "journeys", "cart"),
        ("create", "journeys", "vip"),
        ("activate", "journeys", "cart"),
    ]
    assert said == [
        "segment tea: created",
        "template remind: created",
        "journey cart: created",
        "journey vip: created",
        "journey cart: activated",
    ]
    assert api.state["journeys"]["vip"]["status"] == "draft"


def test_applying_twice_changes_nothing_the_second_time() -> None:
    api = FakeApi()
    apply(api)
    api.calls.clear()
    changes = run.plan(api, items())
    assert [c.action for c in changes] == ["unchanged"] * 4
    assert not any(c.changes_anything for c in changes)
    said, errors = apply(api)
    assert (api.calls, errors) == ([], [])
    assert all(line.endswith(": unchanged") for line in said)


def test_editing_one_step_updates_just_that_journey() -> None:
    api = FakeApi()
    apply(api)
    api.calls.clear()
    edited = {**DOCUMENT, "journeys": [dict(j) for j in DOCUMENT["journeys"]]}
    edited["journeys"][0]["steps"] = {
        "mail": {
            "type": "send",
            "channel": "email",
            "template": "remind",
            "category": "transactional",
        }
    }
    _, errors = apply(api, edited)
    assert errors == []
    assert api.calls == [("update", "journeys", "cart")]
    assert api.state["journeys"]["cart"]["version"] == 2
    assert api.state["journeys"]["vip"]["version"] == 1


def test_a_refused_item_names_its_fields_and_what_depends_on_it_is_not_applied() -> None:
    api = FakeApi()
    api.refuse[("templates", "remind")] = error_of(
        "notifier",
        422,
        {"error": {"message": "the template is not valid",
                   "fields": [{"field": "subject", "problem": "line 1: unexpected '}'"}]}},
        "",
    )  # fmt: skip
    said, errors = apply(api)
    assert said == ["segment tea: created"]
    assert errors == [
        "j.yaml: templates[0] (template remind): the notifier service answered 422: the"
        " template is not valid",
        "j.yaml: templates[0].subject: line 1: unexpected '}'",
        "not applied because of the errors above: journey cart, journey vip",
    ]
    assert [c[1] for c in api.calls] == ["segments", "templates"]


def test_api_errors_become_places_in_the_item() -> None:
    journey = error_of(
        "journey",
        422,
        {"error": {"message": "the journey is not valid", "fields": [
            {"field": "steps.mail.template", "problem": "no template 'x' in the notifier"}]}},
        "",
    )  # fmt: skip
    assert journey.fields == [("steps.mail.template", "no template 'x' in the notifier")]
    request = error_of(
        "segmenter",
        422,
        {"error": {"message": "the request is not valid", "fields": [
            {"field": "body.name", "problem": "Field required"},
            {"field": "body", "problem": "not an object"}]}},
        "",
    )  # fmt: skip
    assert request.fields == [("name", "Field required"), ("", "not an object")]
    condition = error_of(
        "segmenter", 422, {"error": {"message": "conditions.all[0].op: unknown op 'is'"}}, ""
    )
    assert condition.fields == [("conditions.all[0].op", "unknown op 'is'")]
    assert error_of("journey", 502, None, "Bad gateway").message == "Bad gateway"
    assert str(ApiError("journey", 0, "at http://x: refused")) == (
        "cannot reach the journey service at http://x: refused"
    )


def test_export_then_apply_is_a_no_op() -> None:
    api = FakeApi()
    apply(api)
    api.state["journeys"]["old"] = {"id": "old", "status": "archived", "version": 1,
                                    "definition": {"name": "Old"}}  # fmt: skip
    notes: list[str] = []
    exported = run.export(api, notes.append)
    assert notes == ["journey old: archived, left out"]
    assert [j["id"] for j in exported["journeys"]] == ["cart", "vip"]
    assert exported["journeys"][0] == {
        "id": "cart",
        "status": "active",
        "name": "Cart",
        "trigger": {"type": "event", "event": "Checkout Started"},
        "holdout_percent": 10.0,
        "start": "mail",
        "steps": {"mail": {"type": "send", "channel": "email", "template": "remind"}},
    }
    assert exported["templates"] == [{"id": "remind", "channel": "email", "subject": "Hi"}]
    assert exported["segments"] == [
        {"id": "tea", "name": "Tea", "conditions": {"trait": "t", "op": "exists"}}
    ]
    assert not any(c.changes_anything for c in run.plan(api, items(exported)))
    assert run.export(api, notes.append) == exported


def test_a_server_that_stores_another_spelling_is_pointed_out() -> None:
    api = FakeApi()
    odd = {"templates": [{"id": "t", "channel": "email", "subject": "s"}]}
    original = api.save

    def save(kind: Any, item_id: str, body: dict[str, Any], *, exists: bool) -> dict[str, Any]:
        return {**original(kind, item_id, body, exists=exists), "subject": "S"}

    api.save = save  # type: ignore[method-assign]
    said, errors = apply(api, odd)
    assert errors == []
    assert said[0] == "template t: created"
    assert "stored in another spelling" in said[1]
