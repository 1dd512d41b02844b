"""`kizuna dev` (what `make dev` runs): five services ready within 30 s on the embedded
default, a clean stop on Ctrl-C, and the data still there on the next start."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def start_dev(data_dir: Path, port_base: int, pg_port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIZUNA_")}
    env.update(KIZUNA_DATA_DIR=str(data_dir), KIZUNA_EMBEDDED_PG_PORT=str(pg_port))
    return subprocess.Popen(
        [sys.executable, "-m", "kizuna.cli", "dev", "--port-base", str(port_base)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def wait_for_banner(process: subprocess.Popen[str], timeout: float) -> dict[str, str]:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    lines: dict[str, str] = {}
    for line in process.stdout:
        if "key" in line or "workspace" in line:
            name, _, value = line.strip().rpartition(" ")
            lines[name.strip()] = value
        if line.startswith("Press Ctrl-C"):
            return lines
        assert time.monotonic() < deadline, "not ready in time"
    raise AssertionError(f"kizuna dev exited early with {process.wait()}")


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(60)


def free_port_base() -> int:
    """BASE such that BASE+1..BASE+6 are free, below the ephemeral range: there, the client
    side of any connection another test holds could take one of them in the meantime."""
    rng = random.Random()
    while True:
        base = rng.randrange(20000, 32000, 10)
        probes = []
        try:
            for port in range(base + 1, base + 7):  # the services, then PostgreSQL
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return base


def test_dev_starts_everything_and_keeps_data_across_restart(tmp_path: Path) -> None:
    port_base = free_port_base()
    pg_port = port_base + 6
    ports = [port_base + i for i in range(1, 6)]

    started = time.monotonic()
    first = start_dev(tmp_path / "data", port_base, pg_port)
    try:
        banner = wait_for_banner(first, 30)
        assert time.monotonic() - started < 30
        for port in ports:
            assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        admin = {"Authorization": f"Bearer {banner['admin key']}"}
        created = httpx.post(
            f"http://127.0.0.1:{ports[0]}/v1/keys",
            json={"kind": "write", "name": "survives restart"},
            headers=admin,
        )
        assert created.status_code == 201
    finally:
        assert stop(first) == 0
    for port in ports:
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)

    second = start_dev(tmp_path / "data", port_base, pg_port)
    try:
        again = wait_for_banner(second, 30)
        assert again == banner, "the same workspace and keys after a restart"
        keys = httpx.get(f"http://127.0.0.1:{ports[0]}/v1/keys", headers=admin).json()
        assert "survives restart" in {k["name"] for k in keys}
    finally:
        assert stop(second) == 0
