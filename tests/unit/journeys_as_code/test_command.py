"""The command's edge: where the admin key comes from, and what it says before any call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kizuna.cli import app as cli
from kizuna.journeys_as_code.command import resolve_admin_key


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("KIZUNA_ADMIN_KEY", raising=False)
    monkeypatch.setenv("KIZUNA_DATA_DIR", str(tmp_path))
    return tmp_path


def test_the_admin_key_is_given_else_from_the_environment_else_from_kizuna_dev(
    no_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_admin_key(None) is None
    (no_key / "credentials.json").write_text(json.dumps({"admin_key": "kz_admin_dev"}))
    assert resolve_admin_key(None) == "kz_admin_dev"
    monkeypatch.setenv("KIZUNA_ADMIN_KEY", "kz_admin_env")
    assert resolve_admin_key(None) == "kz_admin_env"
    assert resolve_admin_key("kz_admin_given") == "kz_admin_given"


def test_without_a_key_it_says_how_to_give_one(no_key: Path) -> None:
    path = no_key / "j.yaml"
    path.write_text("segments: []\n")
    result = CliRunner().invoke(cli, ["journeys", "apply", str(path)])
    assert result.exit_code == 2
    assert "--admin-key" in result.stderr


def test_file_problems_come_first_and_fail(no_key: Path) -> None:
    path = no_key / "j.json"
    path.write_text('{"journeys": [{"id": "x", "status": "on"}]')
    result = CliRunner().invoke(cli, ["journeys", "apply", str(path), "--admin-key", "k"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{path}: line 1, column ")


def test_an_unreachable_service_is_named(no_key: Path) -> None:
    path = no_key / "j.yaml"
    path.write_text("templates:\n- {id: t, channel: email}\n")
    result = CliRunner().invoke(
        cli,
        [
            "journeys",
            "apply",
            str(path),
            "--admin-key",
            "k",
            "--notifier-url",
            "http://127.0.0.1:9",
        ],
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "kizuna journeys: cannot reach the notifier service at http://127.0.0.1:9: "
    )
