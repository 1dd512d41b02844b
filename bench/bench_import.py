"""Bulk import speed: POST /v1/imports of 100,000 customers and 100,000 orders (CSV).

Run with ``.venv/bin/python bench/bench_import.py [--rows N] [--kind customers|orders|both]``.
Starts an embedded PostgreSQL and ``kizuna serve profile`` (one process, the default bus
``postgres``), writes the two files into a temporary directory, posts each one and polls
``GET /v1/imports/{id}`` until it is completed. The orders belong to the imported customers
(two orders each on average, half of them by e-mail address only), so both identity paths are
exercised. Prints a summary and, last, one JSON line with seconds and rows/s for each file,
and the CPU seconds the profile process and PostgreSQL spent on it (read from /proc: Linux).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from kizuna import auth, migrate
from kizuna.db import create_engine
from kizuna.embedded_pg import EmbeddedPostgres, ensure_database, free_port

TIME_ZONES = ("Asia/Tokyo", "Asia/Seoul", "America/New_York", "Europe/Paris")


def write_customers(path: Path, rows: int) -> None:
    with path.open("w") as out:
        out.write(
            "user_id,email,phone,first_name,last_name,birthday,timezone,locale,plan,"
            "signed_up_at,email_consent\n"
        )
        for i in range(rows):
            out.write(
                f"imp-{i},imp{i}@example.com,+8190{i:08d},Name{i},Family{i % 997},"
                f"19{50 + i % 50}-{1 + i % 12:02d}-{1 + i % 28:02d},"
                f"{TIME_ZONES[i % 4]},ja-JP,{('gold', 'silver', 'basic')[i % 3]},"
                f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00+09:00,"
                f"{('true', 'false', '')[i % 3]}\n"
            )


def write_orders(path: Path, rows: int, customers: int) -> None:
    with path.open("w") as out:
        out.write("order_id,user_id,email,ordered_at,total,currency,status\n")
        for i in range(rows):
            buyer = i % customers
            user_id, email = (f"imp-{buyer}", "") if i % 2 else ("", f"imp{buyer}@example.com")
            status = "refunded" if i % 50 == 0 else ""
            out.write(
                f"imp-o-{i},{user_id},{email},2025-{1 + i % 12:02d}-{1 + i % 28:02d}"
                f"T12:00:00+09:00,{1000 + i % 5000},JPY,{status}\n"
            )


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().startswith("postgres"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def start_profile(url: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KIZUNA_DATABASE_URL": url,
        "KIZUNA_BUS_URL": "postgres",
        "KIZUNA_TOPIC_PREFIX": "bench.",
        "KIZUNA_LOG_LEVEL": "WARNING",
        "KIZUNA_SECRET_KEY": secrets.token_hex(32),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "kizuna.cli", "serve", "profile", "--port", str(port)], env=env
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("profile did not become ready")


async def setup_workspace(url: str) -> str:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            workspace_id = await auth.create_workspace(conn, "bench")
            key = await auth.issue_key(conn, workspace_id, "admin", "bench")
    finally:
        await engine.dispose()
    return key.secret


async def import_file(
    port: int, server_pid: int, admin_key: str, kind: str, path: Path
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {admin_key}", "Content-Type": "text/csv"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        content = await asyncio.to_thread(path.read_bytes)
        server_cpu, postgres_cpu = cpu_seconds([server_pid]), cpu_seconds(postgres_pids())
        started = time.perf_counter()
        response = await client.post(
            "/v1/imports", params={"kind": kind}, content=content, headers=headers
        )
        response.raise_for_status()
        accepted = time.perf_counter() - started
        status_url = response.json()["status_url"]
        while True:
            body = (await client.get(status_url, headers=headers)).json()
            if body["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
    server_cpu = cpu_seconds([server_pid]) - server_cpu
    postgres_cpu = cpu_seconds(postgres_pids()) - postgres_cpu
    if body["status"] != "completed" or body["rows_rejected"]:
        raise RuntimeError(f"import {kind}: {body}")
    return {
        f"{kind}_rows": body["rows_imported"],
        f"{kind}_megabytes": round(len(content) / 1e6, 1),
        f"{kind}_accepted_seconds": round(accepted, 2),
        f"{kind}_seconds": round(elapsed, 1),
        f"{kind}_rows_s": round(body["rows_imported"] / elapsed),
        f"{kind}_server_cpu_seconds": round(server_cpu, 1),
        f"{kind}_postgres_cpu_seconds": round(postgres_cpu, 1),
    }


async def measure(args: argparse.Namespace, url: str, workdir: Path) -> dict[str, Any]:
    admin_key = await setup_workspace(url)
    customers_csv, orders_csv = workdir / "customers.csv", workdir / "orders.csv"
    write_customers(customers_csv, args.rows)
    write_orders(orders_csv, args.rows, max(args.rows // 2, 1))
    port = free_port()
    profile = start_profile(url, port)
    figures: dict[str, Any] = {"rows": args.rows}
    try:
        if args.kind in ("customers", "both"):
            figures.update(
                await import_file(port, profile.pid, admin_key, "customers", customers_csv)
            )
        if args.kind in ("orders", "both"):
            figures.update(await import_file(port, profile.pid, admin_key, "orders", orders_csv))
    finally:
        profile.send_signal(signal.SIGTERM)
        profile.wait(60)
    figures["cpu_count"] = os.cpu_count()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--kind", choices=("customers", "orders", "both"), default="both")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kizuna-bench-import-"))
    server = EmbeddedPostgres(workdir / "pg", free_port()).start()
    try:
        asyncio.run(ensure_database(server.url, "bench"))
        url = server.database_url("bench")
        migrate.upgrade(url)
        figures = asyncio.run(measure(args, url, workdir))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    for kind in ("customers", "orders"):
        if f"{kind}_seconds" in figures:
            print(
                f"import {figures[f'{kind}_rows']:>7} {kind:<9} "
                f"{figures[f'{kind}_seconds']:>6} s  {figures[f'{kind}_rows_s']:>6} rows/s "
                f"({figures[f'{kind}_megabytes']} MB, accepted in "
                f"{figures[f'{kind}_accepted_seconds']} s; CPU: profile "
                f"{figures[f'{kind}_server_cpu_seconds']} s, PostgreSQL "
                f"{figures[f'{kind}_postgres_cpu_seconds']} s)"
            )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
