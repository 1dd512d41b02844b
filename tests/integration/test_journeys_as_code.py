"""`kizuna journeys apply` and `kizuna journeys export` against the real segmenter, notifier
and journey service over HTTP: create, idempotence, export round trips, dry runs, refusals
naming the field, and an edit that touches one journey only."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from typer.testing import CliRunner, Result

from kizuna.cli import app as cli
from kizuna.db import create_engine
from kizuna.settings import KizunaSettings
from tests.conftest import database_url_on
from tests.helpers import make_workspace
from tests.integration.apps import service_app
from tests.integration.live import serving

EXAMPLE = Path(__file__).parents[2] / "examples" / "journeys.yaml"
DOCS = Path(__file__).parents[2] / "docs" / "journey.md"
PATHS = {"segments": "/v1/segments", "templates": "/v1/templates", "journeys": "/v1/journeys"}


@dataclass
class Platform:
    urls: dict[str, str]
    database_url: str

    def workspace(self) -> Workspace:
        async def create() -> str:
            engine = create_engine(self.database_url, pool_size=1)
            try:
                _, _, admin = await make_workspace(engine, f"w{uuid.uuid4().hex[:6]}")
            finally:
                await engine.dispose()
            return admin.secret

        return Workspace(self, asyncio.run(create()))


@dataclass
class Workspace:
    platform: Platform
    admin_key: str

    def kizuna(self, *args: str) -> Result:
        urls = self.platform.urls
        options = [
            "--journey-url", urls["journey"], "--notifier-url", urls["notifier"],
            "--segmenter-url", urls["segmenter"], "--admin-key", self.admin_key,
        ]  # fmt: skip
        return CliRunner().invoke(cli, ["journeys", *args, *options])

    def get(self, kind: str, item_id: str) -> httpx.Response:
        service = {"segments": "segmenter", "templates": "notifier", "journeys": "journey"}[kind]
        return httpx.get(
            f"{self.platform.urls[service]}{PATHS[kind]}/{item_id}",
            headers={"Authorization": f"Bearer {self.admin_key}"},
            timeout=30,
        )

    def versions(self, document: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Each item's version and last change, as its service reports them."""
        found = {}
        for kind in PATHS:
            for entry in document.get(kind) or []:
                view = self.get(kind, entry["id"])
                assert view.status_code == 200, view.text
                body = view.json()
                found[f"{kind}/{entry['id']}"] = (body.get("version"), body.get("updated_at"))
        return found


@pytest.fixture(scope="module")
def platform(pg_server_url: str, template_database: str) -> Iterator[Platform]:
    name = f"t_{uuid.uuid4().hex[:12]}"

    async def database(sql: str) -> None:
        conn = await asyncpg.connect(pg_server_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(database(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'))
    database_url = database_url_on(pg_server_url, name)
    base = KizunaSettings(
        database_url=database_url,
        bus_url="postgres",
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        bus_partitions=2,
        log_level="CRITICAL",
        log_format="console",
    )
    urls: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        urls["segmenter"] = stack.enter_context(serving(service_app("segmenter", base)))
        urls["notifier"] = stack.enter_context(serving(service_app("notifier", base)))
        journey = service_app("journey", base, journey_notifier_url=urls["notifier"])
        urls["journey"] = stack.enter_context(serving(journey))
        yield Platform(urls, database_url)
    asyncio.run(database(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def example() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return document


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def test_apply_creates_everything_and_applying_again_changes_nothing(
    platform: Platform,
) -> None:
    ws = platform.workspace()
    out = ok(ws.kizuna("apply", str(EXAMPLE)))
    assert out.splitlines() == [
        "segment tea_lovers: created",
        "template cart-reminder: created",
        "template cart-coupon: created",
        "template new-harvest: created",
        "journey cart: created",
        "journey new-harvest: created",
        "journey cart: activated",
        "6 created, 0 updated, 1 status changes, 0 unchanged.",
    ]
    assert ws.get("journeys", "cart").json()["status"] == "active"
    assert ws.get("journeys", "new-harvest").json()["status"] == "draft"
    mail = ws.get("templates", "cart-reminder").json()
    assert mail["locales"]["ja"]["subject"].endswith("様、カートに商品が残っています")
    before = ws.versions(example())

    again = ok(ws.kizuna("apply", str(EXAMPLE)))
    assert again.splitlines()[-1] == "0 created, 0 updated, 0 status changes, 6 unchanged."
    assert all(line.endswith(": unchanged") for line in again.splitlines()[:-1])
    assert ws.versions(example()) == before


def test_export_then_apply_is_a_no_op_and_copies_a_workspace(
    platform: Platform, tmp_path: Path
) -> None:
    ws = platform.workspace()
    ok(ws.kizuna("apply", str(EXAMPLE)))
    before = ws.versions(example())
    exported = ok(ws.kizuna("export"))
    ok(ws.kizuna("export", "--out", str(tmp_path / "repo")))
    ok(ws.kizuna("export", "--out", str(tmp_path / "all.json")))
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == [
        "journeys.yaml", "segments.yaml", "templates.yaml",
    ]  # fmt: skip

    for files in (tmp_path / "repo", tmp_path / "all.json"):
        out = ok(ws.kizuna("apply", str(files)))
        assert out.splitlines()[-1] == "0 created, 0 updated, 0 status changes, 6 unchanged."
    assert ws.versions(example()) == before
    assert ok(ws.kizuna("export")) == exported, "export is deterministic"
    assert yaml.safe_load(exported)["journeys"][0]["id"] == "cart"

    copy = platform.workspace()
    ok(copy.kizuna("apply", str(tmp_path / "repo")))
    assert ok(copy.kizuna("export")) == exported
    assert ok(copy.kizuna("apply", str(EXAMPLE))).splitlines()[-1].endswith(" 6 unchanged.")


def test_a_dry_run_shows_the_changes_and_makes_none(platform: Platform, tmp_path: Path) -> None:
    ws = platform.workspace()
    out = ok(ws.kizuna("apply", str(EXAMPLE), "--dry-run"))
    assert "journey cart: create, draft → active" in out.splitlines()
    assert "+++ journey cart (file)" in out
    assert out.splitlines()[-1].startswith("dry run: would create 6, update 0")
    for kind, item_id in [("segments", "tea_lovers"), ("templates", "cart-coupon"),
                          ("journeys", "cart")]:  # fmt: skip
        assert ws.get(kind, item_id).status_code == 404

    ok(ws.kizuna("apply", str(EXAMPLE)))
    before = ws.versions(example())
    edited = tmp_path / "edited.yaml"
    edited.write_text(EXAMPLE.read_text().replace("duration: P1D", "duration: P2D"))
    out = ok(ws.kizuna("apply", str(edited), "--dry-run"))
    assert "journey cart: update" in out.splitlines()
    assert '-      "duration": "P1D",' in out.splitlines()
    assert '+      "duration": "P2D",' in out.splitlines()
    assert ws.versions(example()) == before


def test_editing_one_step_updates_just_that_journey(platform: Platform, tmp_path: Path) -> None:
    ws = platform.workspace()
    ok(ws.kizuna("apply", str(EXAMPLE)))
    before = ws.versions(example())
    edited = tmp_path / "edited.yaml"
    edited.write_text(EXAMPLE.read_text().replace("coupon: CART10", "coupon: CART15"))
    out = ok(ws.kizuna("apply", str(edited)))
    assert "journey cart: updated" in out.splitlines()
    assert out.splitlines()[-1] == "0 created, 1 updated, 0 status changes, 5 unchanged."
    after = ws.versions(example())
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {"journeys/cart"}
    assert after["journeys/cart"][0] == before["journeys/cart"][0] + 1  # active: a new version
    cart = ws.get("journeys", "cart").json()
    assert cart["status"] == "active"
    assert cart["definition"]["steps"]["coupon"]["data"] == {"coupon": "CART15"}


def test_an_invalid_journey_is_reported_by_field_and_fails(
    platform: Platform, tmp_path: Path
) -> None:
    ws = platform.workspace()
    bad = tmp_path / "bad.yaml"
    document = example()
    document["journeys"][0]["steps"]["reminder"]["template"] = "nope"
    document["journeys"][1]["steps"]["mail"]["next"] = "nowhere"
    bad.write_text(yaml.safe_dump(document, allow_unicode=True))
    result = ws.kizuna("apply", str(bad))
    assert result.exit_code == 1
    errors = result.stderr.splitlines()
    assert f"{bad}: journeys[0].steps.reminder.template: no template 'nope' in the notifier" in (
        errors
    )
    assert f"{bad}: journeys[1].steps.mail.next: no step 'nowhere'" in errors
    assert any("the journey service answered 422" in line for line in errors)
    assert ws.get("journeys", "cart").status_code == 404

    condition = tmp_path / "condition.yaml"
    condition.write_text(
        "segments:\n- id: odd\n  name: Odd\n  conditions: {trait: plan, op: is, value: 1}\n"
        "journeys:\n- id: later\n  name: Later\n  trigger: {type: api}\n  start: e\n"
        "  steps: {e: {type: end}}\n"
    )
    result = ws.kizuna("apply", str(condition))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[1].startswith(f"{condition}: segments[0].conditions")
    assert result.stderr.splitlines()[-1] == (
        "not applied because of the errors above: journey later"
    )
    assert ws.get("journeys", "later").status_code == 404


def test_file_problems_are_reported_before_anything_is_asked(
    platform: Platform, tmp_path: Path
) -> None:
    ws = platform.workspace()
    shutil.copy(EXAMPLE, tmp_path / "a.yaml")
    (tmp_path / "b.json").write_text('{"journeys": [{"id": "cart", "status": "live"}]}')
    result = ws.kizuna("apply", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'b.json'}: journeys[0].status: must be one of draft, active, paused",
        f"{tmp_path / 'b.json'}: journeys[0].id: 'cart' is also {tmp_path / 'a.yaml'}: journeys[0]",
    ]
    assert ws.get("segments", "tea_lovers").status_code == 404
    refused = platform.workspace()
    refused.admin_key = "kz_admin_nope"
    result = refused.kizuna("apply", str(EXAMPLE))
    assert result.exit_code == 1
    assert "401" in result.stderr


def test_the_example_in_the_docs_applies(platform: Platform, tmp_path: Path) -> None:
    section = DOCS.read_text().split("## Journeys as code", 1)[1]
    (tmp_path / "docs.yaml").write_text(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    ws = platform.workspace()
    out = ok(ws.kizuna("apply", str(tmp_path / "docs.yaml")))
    assert out.splitlines()[-1] == "4 created, 0 updated, 1 status changes, 0 unchanged."
    assert ws.get("journeys", "tea-news").json()["definition"]["trigger"]["on"] == "entered"


def test_statuses_follow_the_file_and_impossible_moves_change_nothing(
    platform: Platform, tmp_path: Path
) -> None:
    ws = platform.workspace()
    ok(ws.kizuna("apply", str(EXAMPLE)))
    paused = tmp_path / "paused.yaml"
    paused.write_text(EXAMPLE.read_text().replace("status: active", "status: paused"))
    assert "journey cart: paused" in ok(ws.kizuna("apply", str(paused))).splitlines()
    assert ws.get("journeys", "cart").json()["status"] == "paused"
    assert ok(ws.kizuna("apply", str(paused))).splitlines()[-1].endswith(" 6 unchanged.")
    assert "journey cart: activated" in ok(ws.kizuna("apply", str(EXAMPLE))).splitlines()

    before = ws.versions(example())
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        EXAMPLE.read_text()
        .replace("status: draft", "status: paused")
        .replace("coupon: CART10", "coupon: CART20")
    )
    result = ws.kizuna("apply", str(wrong))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{wrong}: journeys[1].status: a draft cannot be paused before it has been active;"
        " use draft or active"
    ]
    assert ws.versions(example()) == before
