"""The file format without I/O beyond a temporary file: shapes, YAML as YAML 1.2, merging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kizuna.journeys_as_code import files
from kizuna.journeys_as_code.document import merge, read_document

EXAMPLE = Path(__file__).parents[3] / "examples" / "journeys.yaml"


def test_items_come_in_dependency_order_with_their_place_in_the_file() -> None:
    items, problems = read_document(
        "j.yaml",
        {
            "journeys": [{"id": "cart", "status": "active", "name": "Cart"}],
            "templates": [{"id": "t", "channel": "email"}],
            "segments": [{"id": "s", "name": "S", "conditions": {}}],
        },
    )
    assert problems == []
    ordered, duplicates = merge(items)
    assert duplicates == []
    assert [(i.kind, i.id) for i in ordered] == [
        ("segments", "s"),
        ("templates", "t"),
        ("journeys", "cart"),
    ]
    journey = ordered[2]
    assert journey.status == "active"
    assert journey.body == {"name": "Cart"}
    assert journey.source.at("steps.mail.template") == "j.yaml: journeys[0].steps.mail.template"


def test_shape_problems_name_the_file_and_the_item() -> None:
    _, problems = read_document(
        "j.yaml",
        {
            "journey": [],
            "segments": [{"id": "s", "name": "S", "conditions": {}, "colour": "red"}],
            "templates": {"id": "t"},
            "journeys": [{"name": "no id"}, {"id": "x", "status": "archived"}, "cart"],
        },
    )
    assert problems == [
        "j.yaml: journey: unknown section; expected segments, templates, journeys",
        "j.yaml: segments[0].colour: unknown field; a segment has conditions, description, id,"
        " name",
        "j.yaml: templates: must be a list",
        "j.yaml: journeys[0].id: must be a non-empty string",
        "j.yaml: journeys[1].status: must be one of draft, active, paused",
        "j.yaml: journeys[2]: must be a mapping",
    ]
    assert read_document("j.yaml", ["a"])[1] == [
        "j.yaml: must be a mapping with segments, templates and/or journeys"
    ]
    assert read_document("empty.yaml", None) == ([], [])


def test_an_id_given_twice_names_both_places() -> None:
    first, _ = read_document("a.yaml", {"templates": [{"id": "t", "channel": "email"}]})
    second, _ = read_document("b.yaml", {"templates": [{"id": "u"}, {"id": "t"}]})
    items, problems = merge(first + second)
    assert [i.id for i in items] == ["t", "u"]
    assert problems == ["b.yaml: templates[1].id: 't' is also a.yaml: templates[0]"]


def test_yaml_is_read_as_yaml_1_2_so_on_yes_and_timestamps_stay_strings(tmp_path: Path) -> None:
    path = tmp_path / "j.yaml"
    path.write_text(
        "journeys:\n- id: x\n  trigger: {type: segment, segment: vip, on: entered}\n"
        "  at: 2026-01-01T09:00:00+09:00\n  birthday: 2000-04-01\n  ok: yes\n  flag: true\n"
        "  quiet: {start: 21:00, end: 09:00}\n  numbers: [10, 1.5, 0x10, 010]\n"
    )
    item = files.read_items([path])[0][0]
    assert item.body == {
        "trigger": {"type": "segment", "segment": "vip", "on": "entered"},
        "at": "2026-01-01T09:00:00+09:00",
        "birthday": "2000-04-01",
        "ok": "yes",
        "flag": True,
        "quiet": {"start": "21:00", "end": "09:00"},
        "numbers": [10, 1.5, 16, "010"],
    }


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.sampled_from(["on", "yes", "21:00", "2026-01-01", "1e3", "1.5e3", "0o7", "~", ".5"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(JSON)
def test_what_is_written_reads_back_as_it_was(value: Any) -> None:
    assert files.parse_yaml(files.dump({"x": value}, False)) == {"x": value}


def test_written_yaml_and_json_read_back_the_same(tmp_path: Path) -> None:
    document = {
        "segments": [],
        "templates": [{"id": "t", "html": "<p>a</p>\n<p>b</p>\n", "subject": "カート"}],
        "journeys": [{"id": "j", "trigger": {"type": "segment", "on": "entered"}, "n": 1.0}],
    }
    for name in ("one.yaml", "one.json"):
        assert files.load(files.write(document, tmp_path / name)[0]) == document
    written = files.write(document, tmp_path / "dir")
    assert [p.name for p in written] == ["segments.yaml", "templates.yaml", "journeys.yaml"]
    assert "html: |\n" in (tmp_path / "dir" / "templates.yaml").read_text()
    items, problems = files.read_items([tmp_path / "dir"])
    assert problems == []
    assert [i.id for i in items] == ["j", "t"]  # journeys.yaml is read first, by name


def test_unreadable_files_say_where() -> None:
    items, problems = files.read_items([Path("/nonexistent/j.yaml")])
    assert items == []
    assert problems[0].startswith("/nonexistent/j.yaml: ")


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "j.yaml"
    path.write_text("journeys:\n- id: x\n  name: [unclosed\n")
    problems = files.read_items([path])[1]
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: ")
    assert "line" in problems[0]


def test_the_example_file_is_well_formed() -> None:
    items, problems = files.read_items([EXAMPLE])
    assert problems == []
    assert {i.label for i in items} >= {"segment tea_lovers", "journey cart", "journey new-harvest"}
