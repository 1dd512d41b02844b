"""No Docker engine runs here, so check that the deployment files name only what exists."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command

from kizuna.cli import app as cli_app
from kizuna.services import SERVICES
from kizuna.settings import KizunaSettings
from kizuna_ingest.settings import IngestSettings
from kizuna_profile.settings import ProfileSettings
from kizuna_segmenter.settings import SegmenterSettings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_CLASSES = [KizunaSettings, IngestSettings, ProfileSettings, SegmenterSettings]
SETTINGS = {f"KIZUNA_{name.upper()}" for cls in SETTINGS_CLASSES for name in cls.model_fields}
CLI_COMMANDS = set(get_command(cli_app).commands)  # type: ignore[attr-defined]


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_runs_every_service_on_its_port() -> None:
    services = compose()["services"]
    for name, spec in SERVICES.items():
        entry = services[name]
        assert entry["command"] == ["serve", name]
        assert entry["ports"] == [f"{spec.port}:{spec.port}"]
        assert entry["environment"]["KIZUNA_PORT"] == str(spec.port)
        assert "healthcheck" in entry
    assert services["migrate"]["command"][0] in CLI_COMMANDS
    assert services["kafka"]["image"].startswith("apache/kafka:4.")


def test_compose_sets_only_real_settings() -> None:
    for name, entry in compose()["services"].items():
        for variable in entry.get("environment", {}):
            if variable.startswith("KIZUNA_"):
                assert variable in SETTINGS, f"{name}: {variable}"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_k8s_deployment_and_service_match_the_code(service: str) -> None:
    deployment, k8s_service = load_all(ROOT / "deploy" / "k8s" / f"{service}.yaml")
    assert deployment["kind"] == "Deployment"
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["serve", service]
    assert container["ports"][0]["containerPort"] == SERVICES[service].port
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "KIZUNA_PORT": str(SERVICES[service].port)
    }
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert k8s_service["spec"]["ports"][0]["port"] == SERVICES[service].port


def test_k8s_config_and_secret_hold_only_real_settings() -> None:
    [config] = load_all(ROOT / "deploy" / "k8s" / "configmap.yaml")
    [secret] = load_all(ROOT / "deploy" / "k8s" / "secret.example.yaml")
    for variable in [*config["data"], *secret["stringData"]]:
        assert variable in SETTINGS, variable
    [job] = load_all(ROOT / "deploy" / "k8s" / "migrate-job.yaml")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][0] in CLI_COMMANDS


def test_dockerfile_copies_existing_paths_and_runs_the_cli() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--)(.+) \S+$", dockerfile, flags=re.M):
        for path in source.split():
            assert (ROOT / path).exists(), path
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert 'ENTRYPOINT ["kizuna"]' in dockerfile
    assert "kizuna" in scripts
    assert {"serve", "migrate", "dev"} <= CLI_COMMANDS


def test_readme_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [s for s in sorted(SETTINGS) if f"`{s}`" not in readme]
    assert not missing, f"README settings table lacks {missing}"
