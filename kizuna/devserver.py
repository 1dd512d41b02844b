"""`kizuna dev`: the whole platform on the embedded default, in one terminal."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from kizuna import bootstrap
from kizuna.embedded_pg import EmbeddedPostgres, ensure_database
from kizuna.services import SERVICES
from kizuna.settings import KizunaSettings, redact

READY_TIMEOUT = 30.0


def _database(settings: KizunaSettings, data_dir: Path) -> tuple[str, EmbeddedPostgres | None]:
    if "KIZUNA_DATABASE_URL" in os.environ:
        return settings.database_dsn(), None
    # Five services, each with an engine pool and a bus pool: more than the default 100.
    server = EmbeddedPostgres(
        data_dir / "postgres", settings.embedded_pg_port, {"max_connections": "300"}
    ).start()
    asyncio.run(ensure_database(server.url, "kizuna"))
    return server.database_url("kizuna"), server


def _wait_ready(
    ports: dict[str, int], deadline: float, children: list[subprocess.Popen[bytes]]
) -> None:
    pending = dict(ports)
    with httpx.Client(timeout=1.0) as client:
        while pending:
            if any(child.poll() is not None for child in children):
                raise RuntimeError("a service exited during start-up; see its log above")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {READY_TIMEOUT:.0f}s: {', '.join(pending)}")
            for name, port in list(pending.items()):
                try:
                    if client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        del pending[name]
                except httpx.TransportError:
                    pass
            time.sleep(0.2)


def serve_process(
    service: str, port: int, env: dict[str, str], *, timeout: float = READY_TIMEOUT
) -> subprocess.Popen[bytes]:
    """``kizuna serve SERVICE`` as a child process, returned once it answers /readyz."""
    child = subprocess.Popen(
        [sys.executable, "-m", "kizuna.cli", "serve", service, "--port", str(port)],
        env={**os.environ, **env},
    )
    try:
        _wait_ready({service: port}, time.monotonic() + timeout, [child])
    except BaseException:
        child.kill()
        child.wait()
        raise
    return child


def run(port_base: int | None = None) -> int:
    started = time.monotonic()
    settings = KizunaSettings()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    database_url, server = _database(settings, data_dir)
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        chosen = bootstrap.dev_secrets(settings, data_dir / "credentials.json")
        ports = {
            name: (port_base + index + 1 if port_base else spec.port)
            for index, (name, spec) in enumerate(SERVICES.items())
        }
        env = {
            # a developer receives webhooks locally; links point at this machine's services
            "KIZUNA_NOTIFIER_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
            "KIZUNA_NOTIFIER_TRACKING_URL": f"http://127.0.0.1:{ports['ingest']}",
            "KIZUNA_NOTIFIER_PUBLIC_URL": f"http://127.0.0.1:{ports['notifier']}",
            "KIZUNA_NOTIFIER_PROFILE_URL": f"http://127.0.0.1:{ports['profile']}",
            "KIZUNA_JOURNEY_NOTIFIER_URL": f"http://127.0.0.1:{ports['notifier']}",
            "KIZUNA_JOURNEY_PROFILE_URL": f"http://127.0.0.1:{ports['profile']}",
            **os.environ,
            "KIZUNA_DATABASE_URL": database_url,
            "KIZUNA_SECRET_KEY": chosen["secret_key"],
        }
        settings = KizunaSettings(database_url=database_url)
        asyncio.run(bootstrap.prepare(settings))
        keys = asyncio.run(
            bootstrap.default_workspace(settings, chosen["write_key"], chosen["admin_key"])
        )
        for name, port in ports.items():
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "kizuna.cli", "serve", name, "--port", str(port)],
                    env=env,
                    start_new_session=True,
                )
            )
        _wait_ready(ports, started + READY_TIMEOUT, children)
        print(_banner(ports, keys, settings, time.monotonic() - started), flush=True)
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
        return 0 if stopping else 1
    finally:
        _stop(children)
        if server is not None and server.started_here:
            server.stop()
        print("Kizuna stopped.", flush=True)


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _banner(
    ports: dict[str, int], keys: bootstrap.DefaultKeys, settings: KizunaSettings, took: float
) -> str:
    lines = [
        "",
        f"Kizuna is ready ({took:.1f}s). Bus: {redact(settings.bus_url)}."
        f" Data: {settings.data_dir}/",
        *(f"  {name:<10} http://127.0.0.1:{port}   (docs: /docs)" for name, port in ports.items()),
        f"  workspace  {keys.workspace_id}",
        f"  write key  {keys.write_key}",
        f"  admin key  {keys.admin_key}",
        "Press Ctrl-C to stop.",
        "",
    ]
    return "\n".join(lines)
